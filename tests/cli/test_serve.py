import socket
import subprocess
import sys

from typer.testing import CliRunner

from rtrec.cli import app

runner = CliRunner()


def test_serve_help_lists_options():
    out = runner.invoke(app, ["serve", "--help"])
    assert out.exit_code == 0
    for flag in ("--home", "--config", "--host", "--port", "--demo"):
        assert flag in out.output


def test_help_does_not_import_torch_or_fastapi():
    code = "import sys; from rtrec.cli import app; print('torch' in sys.modules, 'fastapi' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_bad_config_is_one_line_error(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[serve]\nexploration = 'yolo'\n")
    out = runner.invoke(app, ["serve", "--home", str(tmp_path / "h"), "--config", str(cfg)])
    assert out.exit_code == 1
    assert "serve.exploration" in out.output


def test_port_in_use_is_a_clear_error(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    cfg = tmp_path / "c.toml"
    cfg.write_text("[text]\nenabled = false\n")
    flags = ["--port", str(port), "--quiet"]
    try:
        out = subprocess.run(
            [sys.executable, "-m", "rtrec", "serve", "--home", str(tmp_path / "h"), "--config", str(cfg), *flags],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        busy.close()
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr
