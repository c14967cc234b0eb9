"""README stays true: its option reference is exactly what the option table generates."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_option_reference_matches_option_table():
    from gcircus.options import option_reference_markdown

    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    section = readme.split("<!-- options:begin -->")[1].split("<!-- options:end -->")[0]
    assert section.strip() == option_reference_markdown().strip(), "run scripts/gen-readme-options"


def test_readme_names_the_two_setup_commands_that_exist():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    for script in ("scripts/run", "scripts/test"):
        assert script in readme
        assert os.access(os.path.join(ROOT, script), os.X_OK)
    assert subprocess.run([sys.executable, "-m", "gcircus.cli.gcircusd", "--version"],
                          capture_output=True, text=True).stdout.startswith("gcircusd ")
