"""Twisted adapters: the FastAGI server and the AMI client."""
