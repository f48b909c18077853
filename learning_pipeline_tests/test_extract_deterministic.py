"""The deterministic extractor on realistic events: useful output, and the same output every time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from learning_pipeline.patterns.deterministic import deterministic_pattern

PROJECT = Path(__file__).resolve().parent.parent

NIXOS_FIX = {
    "event_id": "nix-1",
    "source": "aidb",
    "event_type": "query_completion",
    "query": "How do I fix the 'gnome-keyring-daemon: no such secret collection' error on NixOS? "
    "Chrome asks for a password every login.",
    "response": (
        "This happens because the keyring is not unlocked at login. To fix it:\n\n"
        "1. Enable the keyring service in `configuration.nix`:\n"
        "```nix\n"
        "services.gnome.gnome-keyring.enable = true;\n"
        "security.pam.services.gdm.enableGnomeKeyring = true;\n"
        "```\n"
        "2. **Rebuild** the system with `sudo nixos-rebuild switch`\n"
        "3. Log out and log back in.\n"
        "   - the keyring now unlocks with your login password\n"
        "4. Verify with `gnome-keyring-daemon --status`\n"
    ),
    "query_redacted": False,
    "response_redacted": False,
    "success": True,
    "tools_used": [],
    "files_modified": ["/etc/nixos/configuration.nix"],
}

PYTHON_QUESTION = {
    "event_id": "py-1",
    "source": "vscode",
    "event_type": "completion",
    "query": "How can I read a large CSV file in chunks with pandas without running out of memory?",
    "response": (
        "Use the `chunksize` argument of `pandas.read_csv`, which returns an iterator of DataFrames. "
        "Process each chunk and keep only the aggregate you need.\n\n"
        "```python\n"
        "import pandas as pd\n\n"
        "total = 0\n"
        "for chunk in pd.read_csv('big.csv', chunksize=100_000):\n"
        "    total += chunk['amount'].sum()\n"
        "```\n\n"
        "Pick a chunk size that fits comfortably in memory. Specify `dtype` to cut memory further."
    ),
    "query_redacted": False,
    "response_redacted": False,
    "success": True,
    "tools_used": np.array(["read_file", "python"], dtype=object),  # what pandas gives for a list column
    "files_modified": ["scripts/load.py"],
}

SHELL_HOWTO = {
    "event_id": "sh-1",
    "source": "ralph",
    "event_type": "task_completed",
    "query": "Please show me how to find which process is listening on port 8080 and stop it",
    "response": (
        "You can find it with ss and then stop it:\n\n"
        "$ sudo ss -ltnp 'sport = :8080'\n"
        "$ sudo kill 12345\n\n"
        "If it is a systemd service, stop the unit instead:\n\n"
        "```bash\n"
        "# find the unit\n"
        "systemctl status 12345\n"
        "sudo systemctl stop myapp.service\n"
        "```\n"
    ),
    "query_redacted": False,
    "response_redacted": False,
    "success": True,
    "tools_used": ["bash"],
    "files_modified": [],
}


def test_nixos_fix_with_numbered_list_and_nix_block():
    p = deterministic_pattern(NIXOS_FIX)
    assert p.name == "fix_gnome_keyring_daemon_secret_collection_error_nixos"
    assert p.description == "How to fix the 'gnome-keyring-daemon: no such secret collection' error on NixOS"
    assert p.steps == [
        (
            "Enable the keyring service in `configuration.nix`: "
            "`services.gnome.gnome-keyring.enable = true; security.pam.services.gdm.enableGnomeKeyring = true;`"
        ),
        "Rebuild the system with `sudo nixos-rebuild switch`",
        "Log out and log back in.",
        "Verify with `gnome-keyring-daemon --status`",
    ]
    assert p.example == (
        "services.gnome.gnome-keyring.enable = true;\nsecurity.pam.services.gdm.enableGnomeKeyring = true;"
    )
    # technologies: the question's first (gnome-keyring-daemon, NixOS), then files, then the answer's
    assert p.prerequisites == ["GNOME", "NixOS", "Nix", "PAM"]
    assert p.tags[:5] == ["aidb", "gnome", "nixos", "nix", "pam"]
    assert {"fix", "error", "secret", "collection"} <= set(p.tags) and len(p.tags) == 10


def test_python_question_with_code_block():
    p = deterministic_pattern(PYTHON_QUESTION)
    assert p.name == "read_large_csv_file_chunks_pandas"
    assert p.description == "How to read a large CSV file in chunks with pandas without running out of memory"
    assert p.steps == [
        "Use the `chunksize` argument of `pandas.read_csv`, which returns an iterator of DataFrames.",
        "Process each chunk and keep only the aggregate you need.",
        "Pick a chunk size that fits comfortably in memory.",
        "Specify `dtype` to cut memory further.",
    ]
    assert p.example.startswith("import pandas as pd\n\ntotal = 0\nfor chunk in pd.read_csv")
    assert p.tags[:3] == ["vscode", "pandas", "python"]
    assert p.tags == [
        "vscode",
        "pandas",
        "python",
        "read",
        "large",
        "csv",
        "file",
        "chunks",
        "running",
        "memory",
    ]
    assert p.prerequisites == ["pandas", "Python", "read_file"]


def test_shell_howto_with_dollar_commands():
    p = deterministic_pattern(SHELL_HOWTO)
    assert p.name == "find_process_listening_port_8080_stop"
    assert p.description == "How to find which process is listening on port 8080 and stop it"
    assert p.steps == [
        "Run `sudo ss -ltnp 'sport = :8080'`",
        "Run `sudo kill 12345`",
        "Run `systemctl status 12345`",
        "Run `sudo systemctl stop myapp.service`",
    ]
    assert p.example == "# find the unit\nsystemctl status 12345\nsudo systemctl stop myapp.service"
    assert p.tags[0] == "ralph" and "systemd" in p.tags and "port" in p.tags
    assert "completed" not in p.tags and "task" not in p.tags
    assert p.prerequisites == ["systemd", "Bash"]


def test_example_falls_back_to_first_command_then_empty():
    p = deterministic_pattern(dict(SHELL_HOWTO, response="Run this:\n$ docker ps -a\nThen read the output."))
    assert p.example == "docker ps -a" and p.steps == ["Run `docker ps -a`"]
    p = deterministic_pattern(dict(SHELL_HOWTO, response="Restart the service. Then check the logs again."))
    assert p.example == "" and p.steps == ["Restart the service.", "Then check the logs again."]


def test_missing_response_and_odd_questions_still_give_a_valid_pattern():
    p = deterministic_pattern(
        {
            "event_id": "x",
            "source": "hybrid",
            "query": "Why does docker compose restart?",
            "response": None,
            "tools_used": None,
            "files_modified": float("nan"),
        }
    )
    assert p.name == "docker_compose_restart"
    assert p.description == "Solve: why does docker compose restart"
    assert p.steps == [p.description] and p.example == ""
    p = deterministic_pattern({"event_id": "abc123def456789", "query": "?!", "response": "OK"})
    assert p.name == "pattern_abc123def456" and len(p.steps) == 1
    with pytest.raises(ValueError):
        deterministic_pattern({"event_id": "e", "query": "", "response": None})


def test_name_puts_a_technology_first_when_the_six_key_words_have_none():
    q = "How do I make the display manager remember the last session user after a reboot on NixOS?"
    p = deterministic_pattern({"event_id": "e", "query": q, "response": "Set the default session."})
    assert p.name == "nixos_display_manager_remember_last_session"


@pytest.mark.parametrize("ev", [NIXOS_FIX, PYTHON_QUESTION, SHELL_HOWTO], ids=["nixos", "python", "shell"])
def test_same_event_same_pattern(ev):
    assert deterministic_pattern(ev) == deterministic_pattern(dict(ev))


def test_same_pattern_across_processes_with_different_hash_seeds():
    """Set iteration order changes with PYTHONHASHSEED; the output must not."""
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]);"
        "from learning_pipeline_tests.test_extract_deterministic import NIXOS_FIX, PYTHON_QUESTION, SHELL_HOWTO;"
        "from learning_pipeline.patterns.deterministic import deterministic_pattern;"
        "print(json.dumps([deterministic_pattern(e).model_dump() for e in (NIXOS_FIX, PYTHON_QUESTION, SHELL_HOWTO)]))"
    )
    outputs = set()
    for seed in ("1", "2", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run(
            [sys.executable, "-c", script, str(PROJECT)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=PROJECT,
        )
        outputs.add(out.stdout)
    assert len(outputs) == 1
    here = [deterministic_pattern(e).model_dump() for e in (NIXOS_FIX, PYTHON_QUESTION, SHELL_HOWTO)]
    assert json.loads(outputs.pop()) == here
