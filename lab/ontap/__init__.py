"""Emulated NetApp ONTAP cluster: SnapMirror, jobs, volumes holding real files.

``state`` is the state machine (no HTTP), ``san`` its LUNs, igroups and LUN maps, ``app`` the
Flask application over them,
``__main__`` serves one cluster, ``service`` is the lab Service that runs one per site.
"""
