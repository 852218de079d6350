"""A client session above its transport: the session table, ordering, output, forwarding."""

from codexd.session.routes import Handler, Route
from codexd.session.session import ClientSession, map_error
from codexd.session.states import SessionInput, SessionState, next_state

__all__ = ["ClientSession", "Handler", "Route", "SessionInput", "SessionState", "map_error",
           "next_state"]
