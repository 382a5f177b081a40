"""The web console at /console/: server-rendered pages for people (IG officers, administrators, VCSE staff).

`gateway.console.install.install_console(app)` adds it to the gateway's app; docs/console.md explains how
to add a page or a role.
"""
