"""The web console: a page served from this package (``static/``, no build step, nothing fetched at run
time), the push channel that carries each account's events to its open consoles (``hub.py``), and the
node's operations figures, shown there and in ``/metrics`` (``figures.py``)."""
