"""Deployment configuration and the launcher that runs real mosquitto and influxd locally."""

from deploy.launcher import Influxd, Mosquitto, ServiceError, Services, free_port

__all__ = ["Influxd", "Mosquitto", "ServiceError", "Services", "free_port"]
