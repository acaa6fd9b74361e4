"""Settings: the schema and its validation (pure), then the invoke command
reading real config files and variables, in a subprocess."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

from backup_lib.config import (
    SCHEMA, Bool, Duration, EnvSource, FileSource, Float, Int, Setting, TextList, check_invoke_layers, env_var, resolve,
)
from backup_lib.errors import UsageError
from helpers import REPO, make_project

# ----------------------------------------------------------------- the schema


def settings(*sources, flags=None, schema=SCHEMA):
    values, warnings = resolve(list(sources), flags, schema)
    return values, warnings


def env(**variables):
    return EnvSource(variables)


@pytest.mark.parametrize("word,value", [
    ("no", False), ("false", False), ("FALSE", False), ("Off", False), ("0", False), (" no ", False),
    ("yes", True), ("true", True), ("TRUE", True), ("on", True), ("1", True),
])
def test_booleans_from_the_environment(word, value):
    values, _ = settings(env(INVOKE_DB_SQL_DUMP=word, INVOKE_BACKUP_DEFAULT_EXCLUDES=word))
    assert values["db"]["sql_dump"] is value and values["backup"]["default_excludes"] is value


@pytest.mark.parametrize("word", ["", "maybe", "2", "nein", "true!"])
def test_other_boolean_words_are_refused(word):
    with pytest.raises(UsageError) as exc:
        settings(env(INVOKE_DB_SQL_DUMP=word))
    assert exc.value.exit_code == 2
    assert "INVOKE_DB_SQL_DUMP=" in str(exc.value) and "yes/no" in str(exc.value)


@pytest.mark.parametrize("variable,raw", [
    ("INVOKE_BACKUP_RETENTION_DAYS", "abc"), ("INVOKE_BACKUP_RETENTION_DAYS", "1.5"), ("INVOKE_BACKUP_RETENTION_DAYS", "-1"),
    ("INVOKE_BACKUP_MAX_BACKUPS", "0"), ("INVOKE_BACKUP_LOCK_TIMEOUT", "xyz"), ("INVOKE_BACKUP_LOCK_TIMEOUT", "nan"),
    ("INVOKE_BACKUP_LOCK_TIMEOUT", "inf"), ("INVOKE_DB_RESTORE_LOCK_WAIT", "abc"), ("INVOKE_DB_BUSY_TIMEOUT", "-1"),
    ("INVOKE_DB_COMPRESSION", "lz4"), ("INVOKE_DB_COMPRESSION", ""),
])
def test_numbers_and_choices_are_checked_and_the_culprit_named(variable, raw):
    with pytest.raises(UsageError) as exc:
        settings(env(**{variable: raw}))
    assert f"invalid {variable}=" in str(exc.value) and "expected" in str(exc.value)


def test_numbers_parse_and_keep_their_types():
    values, _ = settings(env(INVOKE_BACKUP_RETENTION_DAYS=" 7 ", INVOKE_BACKUP_LOCK_TIMEOUT="2.5", INVOKE_DB_BUSY_TIMEOUT="0",
                             INVOKE_BACKUP_COMPRESSION="ZSTD", INVOKE_DB_COMPRESSION="tar"))
    assert values["backup"]["retention_days"] == 7 and type(values["backup"]["retention_days"]) is int
    assert values["backup"]["lock_timeout"] == 2.5 and values["db"]["busy_timeout"] == 0.0
    assert values["backup"]["compression"] == "zst" and values["db"]["compression"] == "none"


def test_defaults_are_valid_values_of_their_kinds():
    for section, keys in SCHEMA.items():
        for key, setting in keys.items():
            if setting.default is not None:
                assert setting.kind.parse(setting.default) == setting.default, (section, key)
            assert env_var(section, key) == f"INVOKE_{section}_{key}".upper()


def test_file_values_name_the_file():
    with pytest.raises(UsageError) as exc:
        settings(FileSource("/srv/app/invoke.yaml", {"backup": {"lock_timeout": "soon"}}))
    assert str(exc.value) == ("invalid backup.lock_timeout in /srv/app/invoke.yaml ('soon'): "
                              "expected a number of seconds from 0 to 86400")
    for bad in ({"db": {"busy_timeout": -1}}, {"db": {"sql_dump": "maybe"}}, {"backup": {"retention_days": True}},
                {"backup": {"include": {"a": 1}}}, {"backup": {"max_backups": 2.5}}):
        with pytest.raises(UsageError, match="invoke.yaml"):
            settings(FileSource("invoke.yaml", bad))


def test_yaml_types_and_text_spellings_both_work():
    values, _ = settings(FileSource("f", {"backup": {"default_excludes": "off", "retention_days": "9", "name": 2024,
                                                     "include": ".env, instance/"},
                                          "db": {"sql_dump": False, "busy_timeout": 3}}))
    assert values["backup"]["default_excludes"] is False and values["backup"]["retention_days"] == 9
    assert values["backup"]["name"] == "2024" and values["backup"]["include"] == [".env", "instance/"]
    assert values["db"]["sql_dump"] is False and values["db"]["busy_timeout"] == 3.0


def test_precedence_is_invokes_and_flags_win():
    system = FileSource("/etc/invoke.yaml", {"backup": {"name": "system", "retention_days": 1, "max_backups": 1}})
    user = FileSource("~/.invoke.yaml", {"backup": {"name": "user", "retention_days": 2}})
    project = FileSource("invoke.yaml", {"backup": {"name": "project", "compression": "zst"}})
    runtime = FileSource("runtime.yaml", {"backup": {"compression": "none"}})
    variables = env(INVOKE_BACKUP_NAME="env", INVOKE_BACKUP_COMPRESSION="gz", INVOKE_BACKUP_RETENTION_DAYS="3")
    values, _ = settings(system, user, project, variables, runtime)
    assert values["backup"]["name"] == "env"  # the environment beats the files below it
    assert values["backup"]["compression"] == "none"  # the runtime file beats the environment (Invoke's order)
    assert values["backup"]["retention_days"] == 3 and values["backup"]["max_backups"] == 1
    values, _ = settings(system, user, project, variables, runtime, flags={"backup": {"--retention-days": "4", "--compression": "zst"}})
    assert values["backup"]["retention_days"] == 4 and values["backup"]["compression"] == "zst"


def test_null_means_the_default_and_every_value_is_checked():
    values, _ = settings(FileSource("a", {"backup": {"compression": "zst"}}), FileSource("b", {"backup": {"compression": None}}))
    assert values["backup"]["compression"] == "gz"
    # A broken value is reported even where a later source overrides it.
    with pytest.raises(UsageError, match="in a "):
        settings(FileSource("a", {"backup": {"lock_timeout": "soon"}}), env(INVOKE_BACKUP_LOCK_TIMEOUT="3"))


def test_lists_from_the_environment_and_from_flags():
    values, _ = settings(env(INVOKE_BACKUP_INCLUDE="app.log", INVOKE_BACKUP_EXCLUDE=" media/ , *.bak,,"))
    assert values["backup"]["include"] == ["app.log"] and values["backup"]["exclude"] == ["media/", "*.bak"]
    values, _ = settings(FileSource("f", {"backup": {"include": [".env"]}}), flags={"backup": {"--include": ["a", "b"]}})
    assert values["backup"]["include"] == [".env", "a", "b"]  # flags add to the configured list
    assert SCHEMA["backup"]["include"].default == []  # not shared with a result


def test_contradicting_flags_are_refused():
    with pytest.raises(UsageError) as exc:
        settings(flags={"backup": {"--no-compress": True, "--compression": "zst"}})
    assert str(exc.value) == "--no-compress and --compression zst contradict each other: give one"
    values, _ = settings(flags={"backup": {"--no-compress": True, "--compression": "none"}})
    assert values["backup"]["compression"] == "none"
    values, _ = settings(flags={"db": {"--no-compress": True, "--no-sql-dump": True}})
    assert values["db"]["compression"] == "none" and values["db"]["sql_dump"] is False
    with pytest.raises(UsageError, match=r"^--incremental and --full contradict each other: give one$"):
        settings(flags={"backup": {"--incremental": True, "--full": True}})
    values, _ = settings(FileSource("f", {"backup": {"incremental": "auto"}}), flags={"backup": {"--full": True}})
    assert values["backup"]["incremental"] == "false"  # --full wins over the configuration
    with pytest.raises(UsageError, match=r"invalid --compression '': expected one of gz, zst, none"):
        settings(flags={"backup": {"--compression": ""}})
    with pytest.raises(UsageError, match=r"--retention-days 1000000: expected a whole number of days from 0 to 36500"):
        settings(flags={"backup": {"--retention-days": "1000000"}})
    values, _ = settings(flags={"backup": {"--compression": None, "--no-compress": False, "--include": []}})
    assert values["backup"]["compression"] == "gz" and values["backup"]["include"] == []


def test_a_flag_the_schema_does_not_know_is_a_bug():
    with pytest.raises(ValueError):
        settings(flags={"backup": {"--compresion": "zst"}})


def test_unknown_keys_warn_with_a_suggestion():
    values, warnings = settings(FileSource("/p/invoke.yaml", {"backup": {"compresion": "zst"}, "db": {"pth": "x"}, "run": {"echo": True}}),
                                env(INVOKE_DB_SQL_DUMPS="no", INVOKE_RUNTIME_CONFIG="x", INVOKE_DEBUG="1"))
    assert values["backup"]["compression"] == "gz"
    assert warnings == [
        "unknown setting backup.compresion in /p/invoke.yaml is ignored; did you mean compression?",
        "unknown setting db.pth in /p/invoke.yaml is ignored; did you mean path?",
        "unknown setting INVOKE_DB_SQL_DUMPS is ignored; did you mean INVOKE_DB_SQL_DUMP?",
    ]


def test_sections_must_be_mappings():
    with pytest.raises(UsageError, match="backup in invoke.yaml must be a mapping"):
        settings(FileSource("invoke.yaml", {"backup": 5}))
    with pytest.raises(UsageError, match="must hold a mapping"):
        settings(FileSource("invoke.yaml", ["backup"]))


def test_later_features_add_settings_by_adding_entries():
    schema = {**SCHEMA, "notify": {
        "after": Setting(Duration(60, 30 * 86400), 26 * 3600.0),
        "enabled": Setting(Bool(), False),
        "to": Setting(TextList(), []),
        "retries": Setting(Int(0, 10), 3),
        "timeout": Setting(Float(0, 60, "seconds"), 5.0),
    }}
    values, _ = settings(env(INVOKE_NOTIFY_AFTER="7d", INVOKE_NOTIFY_ENABLED="yes", INVOKE_NOTIFY_TO="a@x, b@x"), schema=schema)
    assert values["notify"] == {"after": 604800.0, "enabled": True, "to": ["a@x", "b@x"], "retries": 3, "timeout": 5.0}
    assert values["backup"]["compression"] == "gz"
    for raw, seconds in (("90", 90.0), ("90s", 90.0), ("15m", 900.0), ("26h", 93600.0), ("1.5h", 5400.0), ("2w", 1209600.0), (120, 120.0)):
        assert Duration(0, 10**7).parse(raw) == seconds
    with pytest.raises(UsageError, match=r"INVOKE_NOTIFY_AFTER=5y: expected a duration such as 90s, 15m, 26h or 7d, from 1m to 30d"):
        settings(env(INVOKE_NOTIFY_AFTER="5y"), schema=schema)


def test_invoke_merge_problems_are_found_before_invoke_meets_them():
    defaults = ("Invoke's defaults", {"run": {"echo": False}, "tasks": {"dedupe": True}})
    assert check_invoke_layers([defaults, ("a.yaml", {"backup": {"name": "x"}}), ("b.yaml", None)]) is None
    assert check_invoke_layers([defaults, ("a.yaml", {"run": 5})]) == (
        "run is a single value (5) in a.yaml but a mapping in Invoke's defaults: Invoke cannot merge them")
    assert check_invoke_layers([defaults, ("user.yaml", {"backup": 5}), ("invoke.yaml", {"backup": {"name": "x"}})]) == (
        "backup is a mapping in invoke.yaml but a single value (5) in user.yaml: Invoke cannot merge them")
    assert check_invoke_layers([defaults, ("a.yaml", ["x"])]) == "a.yaml must hold a mapping of settings (it holds list)"
    assert "setting names must be text" in check_invoke_layers([defaults, ("a.yaml", {"backup": {1: 2}})])


# ------------------------------------------------------- through the invoke command


@pytest.fixture
def app(tmp_path):
    """A project with this toolkit's tasks.py beside it, so that its invoke.yaml is the project config."""
    root = make_project(tmp_path / "app")
    shutil.copy(REPO / "tasks.py", root / "tasks.py")
    return root


def invoke(cwd, *args, env=None, **kw):
    full = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=cwd, env=full, capture_output=True, text=True, **kw)


def one_line_error(proc, code=2):
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "please report" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.mark.parametrize("text,needle", [
    ("backup:\n  name: [unclosed\n", "is not valid YAML"),
    ("backup:\n\tname: x\n", "is not valid YAML"),
    ("- just\n- a list\n", "must hold a mapping"),
    ("run: yes\n", "run is a single value"),
    ("backup:\n  lock_timeout:\n    seconds: 3\n", None),  # a mapping where a value is expected: our check, at task time
])
def test_malformed_invoke_yaml_is_one_line_and_exit_2(app, text, needle):
    (app / "invoke.yaml").write_text(text)
    for args in (["backup.list"], ["db.list"], ["--list"]):
        if needle is None and args == ["--list"]:
            continue
        line = one_line_error(invoke(app, *args))
        assert str(app / "invoke.yaml") in line and (needle or "backup.lock_timeout") in line, line


def test_malformed_runtime_config_is_one_line_and_exit_2(app, tmp_path):
    bad_json = tmp_path / "run.json"
    bad_json.write_text('{"backup": {"name": "x",}}')
    line = one_line_error(invoke(app, "-f", str(bad_json), "backup.list"))
    assert "run.json is not valid JSON" in line and "line 1" in line
    bad_yaml = tmp_path / "run.yaml"
    bad_yaml.write_text("backup: [")
    line = one_line_error(invoke(app, "backup.list", env={"INVOKE_RUNTIME_CONFIG": str(bad_yaml)}))
    assert "run.yaml is not valid YAML" in line
    toml = tmp_path / "run.toml"
    toml.write_text("")
    assert ".yaml, .yml, .json or .py" in one_line_error(invoke(app, "-f", str(toml), "backup.list"))


def test_user_config_merge_conflict_is_one_line(app):
    (app / "invoke.yaml").write_text("backup:\n  name: proj\n")
    home = os.environ["HOME"]
    with open(os.path.join(home, ".invoke.yaml"), "w") as fh:
        fh.write("backup: nightly\n")
    try:
        line = one_line_error(invoke(app, "backup.list"))
        assert "backup is a mapping in" in line and ".invoke.yaml" in line
    finally:
        os.remove(os.path.join(home, ".invoke.yaml"))


@pytest.mark.parametrize("variable,raw,task", [
    ("INVOKE_BACKUP_RETENTION_DAYS", "abc", "backup.list"),
    ("INVOKE_BACKUP_LOCK_TIMEOUT", "xyz", "backup.list"),
    ("INVOKE_DB_RESTORE_LOCK_WAIT", "abc", "db.list"),
    ("INVOKE_DB_BUSY_TIMEOUT", "-1", "db.list"),
    ("INVOKE_DB_SQL_DUMP", "maybe", "db.list"),
])
def test_bad_variables_are_one_line_and_exit_2(app, variable, raw, task):
    # invoke.yaml gives the key a number or a boolean: Invoke would cast the variable by that type.
    (app / "invoke.yaml").write_text("backup:\n  retention_days: 30\n  lock_timeout: 10\ndb:\n  restore_lock_wait: 2\n  busy_timeout: 5\n  sql_dump: true\n")
    line = one_line_error(invoke(app, task, env={variable: raw}))
    assert f"{variable}={raw}" in line


def test_lock_timeout_soon_in_invoke_yaml(app):
    (app / "invoke.yaml").write_text("backup:\n  lock_timeout: soon\n")
    line = one_line_error(invoke(app, "backup.create"))
    assert line == f"error: invalid backup.lock_timeout in {app / 'invoke.yaml'} ('soon'): expected a number of seconds from 0 to 86400"
    assert not (app / "backups").exists()


def test_false_from_the_environment_is_false(app):
    (app / "invoke.yaml").write_text("backup:\n  default_excludes: true\ndb:\n  sql_dump: true\n")
    proc = invoke(app, "backup.create", "--dry-run", "--json", env={"INVOKE_BACKUP_DEFAULT_EXCLUDES": "false"})
    assert proc.returncode == 0, proc.stderr
    assert "node_modules/left-pad/index.js" in json.loads(proc.stdout)["files"]
    proc = invoke(app, "backup.create", "--dry-run", "--json", env={"INVOKE_BACKUP_DEFAULT_EXCLUDES": "Yes"})
    assert "node_modules/left-pad/index.js" not in json.loads(proc.stdout)["files"]
    os.remove(app / "app.db")
    os.remove(app / "app.db-wal")
    con = sqlite3.connect(app / "app.db")
    con.execute("create table t (x)")
    con.commit()
    con.close()
    for word in ("no", "false", "OFF"):
        proc = invoke(app, "db.backup", "--json", env={"INVOKE_DB_SQL_DUMP": word})
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["sql_dump"] is None, word
    proc = invoke(app, "db.backup", "--json", env={"INVOKE_DB_SQL_DUMP": "on"})
    assert json.loads(proc.stdout)["sql_dump"] == "app.sql"


def test_list_setting_from_the_environment(app):
    proc = invoke(app, "backup.create", "--dry-run", "--json", env={"INVOKE_BACKUP_INCLUDE": "app.log, .env"})
    assert proc.returncode == 0, proc.stderr
    files = json.loads(proc.stdout)["files"]
    assert "app.log" in files and ".env" in files


def test_unknown_keys_warn_once_per_run(app):
    (app / "invoke.yaml").write_text("backup:\n  compresion: zst\ndb:\n  busy_timout: 3\n")
    proc = invoke(app, "backup.list", "db.list", "backup.list", env={"INVOKE_BACKUP_RETENTON_DAYS": "3"})
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: unknown setting backup.compresion in {app / 'invoke.yaml'} is ignored; did you mean compression?",
        f"warning: unknown setting db.busy_timout in {app / 'invoke.yaml'} is ignored; did you mean busy_timeout?",
        "warning: unknown setting INVOKE_BACKUP_RETENTON_DAYS is ignored; did you mean INVOKE_BACKUP_RETENTION_DAYS?",
    ], proc.stderr


def test_negative_busy_timeout_in_invoke_yaml(app):
    (app / "invoke.yaml").write_text("db:\n  busy_timeout: -1\n")
    assert "db.busy_timeout" in one_line_error(invoke(app, "db.backup"))
