"""A foreign gRPC client for rrockerd: Python's grpcio, stubs generated from the .proto at
run time. Starts `sh -c SCRIPT` over mTLS, streams it to its end and prints one JSON line:
{"task_id", "stdout", "stderr", "state", "exit_code"}.

Usage: foreign_client.py ADDR PKI_DIR IDENTITY PROTO_DIR SCRIPT
"""

import importlib
import json
import pathlib
import sys
import tempfile

import grpc
from grpc_tools import protoc


def stubs(proto_dir, out_dir):
    """Generates rrocker_pb2 and rrocker_pb2_grpc into out_dir and imports them."""
    status = protoc.main([
        "protoc", f"-I{proto_dir}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}",
        str(pathlib.Path(proto_dir) / "rrocker.proto"),
    ])
    if status != 0:
        sys.exit(f"protoc failed with {status}")
    sys.path.insert(0, out_dir)
    return importlib.import_module("rrocker_pb2"), importlib.import_module("rrocker_pb2_grpc")


def main():
    addr, pki, identity, proto_dir, script = sys.argv[1:6]
    pki = pathlib.Path(pki)
    with tempfile.TemporaryDirectory() as out_dir:
        messages, services = stubs(proto_dir, out_dir)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=(pki / "server-ca.pem").read_bytes(),
            private_key=(pki / f"{identity}.key").read_bytes(),
            certificate_chain=(pki / f"{identity}.pem").read_bytes(),
        )
        with grpc.secure_channel(addr, credentials) as channel:
            tasks = services.TaskServiceStub(channel)
            started = tasks.Start(messages.StartRequest(argv=[b"/bin/sh", b"-c", script.encode()]))
            out, err, final = b"", b"", None
            for event in tasks.Stream(messages.StreamRequest(task_id=started.task_id)):
                if event.HasField("output"):
                    if event.output.fd == messages.FD_STDERR:
                        err += event.output.data
                    else:
                        out += event.output.data
                else:
                    final = event.status
    print(json.dumps({
        "task_id": started.task_id,
        "stdout": out.decode(),
        "stderr": err.decode(),
        "state": messages.TaskState.Name(final.state),
        "exit_code": final.exit_code if final.HasField("exit_code") else None,
    }))


if __name__ == "__main__":
    main()
