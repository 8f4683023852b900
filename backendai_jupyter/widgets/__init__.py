"""Jupyter widgets for Backend.AI (the optional ``[widgets]`` extra: ipywidgets 8, JupyterLab 4).

::

    from backendai_jupyter.widgets import resource_picker, folder_browser, session_dashboard
    picker = resource_picker()        # then picker.to_flags(), picker.apply_to_kernel()
    folder_browser()
    session_dashboard()

They work in a plain IPython kernel and, in a ``%%local`` cell, inside the "Backend.AI Python
(remote GPU)" kernel. Every action runs on the workspace loop (:mod:`...workspace.loop`), so no
button ever holds the kernel. Without a ``client`` each widget uses the workspace's (the one the
magics and the proxy kernel share, with their ``%backendai config``).
"""

from .factories import folder_browser, resource_picker, session_dashboard
from .folders import FolderBrowser
from .resources import ResourcePicker
from .sessions import SessionDashboard

__all__ = [
    "FolderBrowser",
    "ResourcePicker",
    "SessionDashboard",
    "folder_browser",
    "resource_picker",
    "session_dashboard",
]
