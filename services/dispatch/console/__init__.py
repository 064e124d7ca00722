"""The web console (issue 14): dispatch's pages for the lead unit and the handling units, at ``/console``."""

from services.dispatch.console.app import create_app, register

__all__ = ["create_app", "register"]
