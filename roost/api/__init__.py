"""The HTTP side of Roost: the Thinger.io REST API as a Starlette app."""
