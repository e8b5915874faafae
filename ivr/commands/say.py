"""Placeholder until this area lands: registers no command yet."""


def register(sub):
    return None
