"""Emulated NetApp ONTAP cluster: SnapMirror, jobs, volumes holding real files.

``state`` is the state machine (no HTTP), ``app`` the Flask application over it,
``__main__`` serves one cluster, ``service`` is the lab Service that runs one per site.
"""
