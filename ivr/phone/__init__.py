"""The phone edge: SIP/RTP, AudioSocket and the server that runs calls on them."""
