"""How a request reaches the process holding a device's session, and how stats fan out."""
