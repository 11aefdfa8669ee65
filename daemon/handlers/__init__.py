"""The daemon's operations, one handler class per feature, and the dispatcher that routes requests to them.

A handler class is built with exactly the services it needs and marks each method with the request type it
answers (``@handles(q.Ping)``); :class:`daemon.handlers.dispatch.Dispatcher` collects the marked methods of
the objects the composition root gives it. No socket code here: a handler gets its request and a Context.
"""
