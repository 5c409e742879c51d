"""Fused implementations, looked up by name from kernels.ops.

An op missing here runs through the reference path even with the switch on
(kernels.ops.last_path tells which path ran).
"""
