"""Edges that drive a call: the session shared by every channel, call logs, the kiosk."""
