"""ChestAid's deployable service: DICOM SCP, worker, sender, scheduler and web roles.

The service imports the ML core (``chestaid``); the core never imports the service.
"""
