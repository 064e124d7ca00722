"""Masking: addresses as logs and outcome events show them (phones, e-mail local parts, webhook keys)."""

from __future__ import annotations

import re

from shared.contracts.common import mask_name, mask_phone


def mask_address(channel: str, address: str) -> str:
    """An address fit for logs and outcome events: phones and e-mail local parts masked, webhook keys hidden."""
    if channel == "sms":
        return mask_phone(address)
    if channel == "email":
        local, _, domain = address.partition("@")
        return f"{mask_name(local)}@{domain}" if domain else mask_name(address)
    m = re.search(r"([?&]key=)([^&]+)", address)
    if m:
        key = m.group(2)
        return address[: m.start(2)] + key[:4] + "****" + address[m.end(2) :]
    return address.split("?", 1)[0]
