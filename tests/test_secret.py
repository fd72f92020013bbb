"""The one door for secrets (connectors.core.secret): where a secret is kept, read at each use,
written in the directory as the `*_env` options always were, and never shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from connectors.artemail.options import ArtemailOptions
from connectors.core.directory import Credential
from connectors.core.secret import Secret, value_of
from connectors.mail.options import MailPartnerOptions, MailSettings
from connectors.openurl.options import OpenUrlOptions


def test_a_bare_name_is_an_environment_variable_read_at_each_use() -> None:
    secret = Secret.model_validate("RSHUB_TEST_PW")
    assert secret.value({"RSHUB_TEST_PW": "one"}) == "one"
    assert secret.value({"RSHUB_TEST_PW": "two"}) == "two"  # rotated: no restart
    assert secret.value({"RSHUB_TEST_PW": ""}) is None  # empty is unset
    assert secret.value({}) is None


def test_a_file_holds_it_when_the_variable_is_unset(tmp_path: Path) -> None:
    kept = tmp_path / "pw"
    kept.write_text("from-file\n")
    secret = Secret.model_validate({"env": "RSHUB_TEST_PW", "file": str(kept)})
    assert secret.value({}) == "from-file"
    assert secret.value({"RSHUB_TEST_PW": "from-env"}) == "from-env"
    assert secret.source() == f"$RSHUB_TEST_PW or {kept}"


def test_a_secret_kept_nowhere_is_refused() -> None:
    with pytest.raises(ValidationError, match="names no environment variable"):
        Secret.model_validate({})


def test_the_value_is_never_shown() -> None:
    secret = Secret(env="RSHUB_TEST_PW")
    environ = {"RSHUB_TEST_PW": "hunter2"}
    assert secret.value(environ) == "hunter2"
    shown = [repr(secret), str(secret), secret.source(), str(secret.model_dump())]
    assert not any("hunter2" in text for text in shown)


def test_the_env_options_keep_their_yaml_and_round_trip() -> None:
    options = ArtemailOptions.model_validate({"customer_code_env": "BL_CODE"})
    assert options.customer_code_env == Secret(env="BL_CODE")
    assert options.password_env == Secret(env="RSHUB_BL_ART_PASSWORD")  # the default
    dumped = options.model_dump()
    assert dumped["customer_code_env"] == "BL_CODE"
    assert ArtemailOptions.model_validate(dumped) == options
    mail = MailPartnerOptions.model_validate({"mailbox_password_env": "PW"})
    assert value_of(mail.mailbox_password_env, {"PW": "x"}) == "x"
    assert value_of(MailPartnerOptions().mailbox_password_env) is None
    settings = MailSettings.model_validate({"smtp_password_env": "SMTP_PW"})
    assert settings.smtp_password_env.value({"SMTP_PW": "y"}) == "y"
    openurl = OpenUrlOptions.model_validate({"link_token_env": "TOKEN"})
    assert openurl.link_token_env == Secret(env="TOKEN") and openurl.patron_secret_env is None


def test_a_partner_credential_reads_through_the_same_door(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = tmp_path / "secret"
    kept.write_text("filed")
    credential = Credential(secret_env="RSHUB_TEST_CREDENTIAL", secret_file=kept)
    monkeypatch.delenv("RSHUB_TEST_CREDENTIAL", raising=False)
    assert credential.secret() == "filed"
    monkeypatch.setenv("RSHUB_TEST_CREDENTIAL", "set")
    assert credential.secret() == "set"
    assert credential.source() == f"$RSHUB_TEST_CREDENTIAL or {kept}"
