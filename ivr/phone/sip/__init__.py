"""SIP user agent server for the phone hotline: message parsing, SDP, dialogs, the UDP server."""
