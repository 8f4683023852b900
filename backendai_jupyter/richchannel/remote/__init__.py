"""The rich channel's programs that run inside the remote session.

Each module here is sent to the session as text (:mod:`..calls`) and executed there in the
private module ``_backendai_rich``; it must import only the standard library, IPython,
ipykernel and ``comm``, inside functions where the import is not the standard library's
(tests/unit/test_richchannel.py checks this).
"""
