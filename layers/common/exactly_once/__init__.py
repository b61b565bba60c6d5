"""exactly_once: provider webhooks and outbound sends that happen exactly once.

The shared library of the SAM bundle, shipped as a Lambda layer. Handlers under
``functions/`` stay thin and call into the modules here.
"""
