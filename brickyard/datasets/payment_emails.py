"""Payment e-mails of about 600 characters with known `amount_paid` and `payee`, for the extraction benchmark
and the demo.

Written from templates (no real e-mail set ships in a PyPI package), so unlike the other sets here they are
synthetic; each mentions other amounts and names (an invoice total, a fee, a sender, a contact) so that
copying the right value matters.
"""

from __future__ import annotations

import random
from typing import Any

PAYEES = [
    "Mercury Technologies Inc.",
    "Northwind Traders",
    "Blue Harbor Logistics",
    "Acme Office Supplies",
    "Greenfield Catering Ltd",
    "Atlas Cloud Services",
    "Riverside Dental Clinic",
    "Orion Legal Partners",
    "Summit Print Shop",
    "Keystone Energy Co.",
]
SENDERS = ["Maria Lopez", "James Chen", "Aisha Khan", "Tom Becker", "Elena Rossi", "Sam Okafor"]
TEMPLATE = (
    "Subject: Payment confirmation for invoice {invoice}\n\n"
    "Hi {first},\n\n"
    "This is to confirm that we have paid {payee} the amount of ${amount} today by bank transfer, "
    "covering invoice {invoice} dated {day} {month}. The original invoice total was ${total}, and the "
    "difference of ${diff} reflects the early-payment discount agreed with their accounts team. "
    "A processing fee of ${fee} was charged by our bank and is not included above. Please file the remittance "
    "advice with the {month} records and let me know if {payee_short} asks for anything else. The reference on "
    "the transfer is {ref}.\n\n"
    "Best regards,\n{sender}\nFinance Operations"
)


def payment_emails(count: int, *, seed: int = 7) -> list[dict[str, Any]]:
    """`count` e-mails: `text`, and the gold `amount_paid` (as written, e.g. "1,284.50") and `payee`."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        payee = rng.choice(PAYEES)
        total = rng.randint(400, 9000) + rng.choice([0, 0.5, 0.25, 0.99])
        diff = round(total * rng.choice([0.01, 0.02, 0.03]), 2)
        amount = total - diff
        text = TEMPLATE.format(
            invoice=f"INV-{rng.randint(10000, 99999)}",
            first=rng.choice(["Priya", "Daniel", "Chloe", "Marcus"]),
            payee=payee,
            payee_short=payee.split()[0],
            amount=f"{amount:,.2f}",
            total=f"{total:,.2f}",
            diff=f"{diff:,.2f}",
            fee=f"{rng.choice([2.5, 5, 7.5, 12]):,.2f}",
            day=rng.randint(1, 28),
            month=rng.choice(["March", "April", "May", "June"]),
            ref=f"TRX{rng.randint(100000, 999999)}",
            sender=rng.choice(SENDERS),
        )
        out.append({"text": text, "amount_paid": f"{amount:,.2f}", "payee": payee})
    return out
