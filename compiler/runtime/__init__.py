"""Runtimes: compile generated source for a device and launch kernels."""
