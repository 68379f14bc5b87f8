"""The web service (``kronos serve``).

``checks``, ``security`` and ``upload`` need only the standard library and pandas;
``app``, ``schemas`` and ``serving`` need the ``serve`` extra
(``pip install 'kronos-kline[serve]'``) and are imported lazily.
"""
