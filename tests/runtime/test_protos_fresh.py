"""The committed gRPC stubs work as a subpackage. That they are exactly what hack/gen-protos.py makes from the
committed .proto files: tests/test_derived_files.py (hack/regen.py --check)."""

from __future__ import annotations


def test_generated_code_imports_as_a_subpackage() -> None:
    from node_janitor.runtime.gen.containerd.services.images.v1 import images_pb2, images_pb2_grpc
    from node_janitor.runtime.gen.runtime.v1 import api_pb2

    assert images_pb2.Image.__module__ == "node_janitor.runtime.gen.containerd.services.images.v1.images_pb2"
    assert images_pb2.Image.DESCRIPTOR.fields_by_name["target"].message_type.full_name == "containerd.types.Descriptor"
    assert hasattr(images_pb2_grpc, "ImagesStub")
    assert api_pb2.DESCRIPTOR.package == "runtime.v1"
