"""Offline Vietnamese voice IVR support responder for VNPT SmartCA."""

__version__ = "0.1.0"
