"""The web service (``kronos serve``) and the bar-file helpers it shares with the CLI.

``bars`` needs only pandas; ``app``, ``schemas`` and ``serving`` need the ``serve`` extra
(``pip install 'kronos-kline[serve]'``) and are imported lazily.
"""
