"""The gRPC API of pycontainerd and its shim: modules generated from proto/ (`make proto`).

Do not edit the *_pb2*.py* files here; change the .proto sources and regenerate.
"""
