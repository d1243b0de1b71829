"""Client-certificate subjects → identities."""

from __future__ import annotations

from tureen.auth.mtls import SubjectMapper, subject_of
from tureen.auth.settings import MTLSRule

CERT = {"subject": ((("countryName", "DE"),), (("organizationName", "acme"),),
                    (("commonName", "transformer-1"),))}


def test_subject_in_rfc4514_order_with_escapes() -> None:
    assert subject_of(CERT) == "CN=transformer-1,O=acme,C=DE"
    evil = {"subject": ((("commonName", "a,O=admin"),),)}
    assert subject_of(evil) == "CN=a\\,O=admin"
    assert subject_of(None) is None and subject_of({}) is None


def test_first_matching_rule_wins_and_no_match_has_no_role() -> None:
    m = SubjectMapper([
        MTLSRule(match="CN=transformer-*,O=acme,C=DE", roles=["predictor"], names=["fraud*"]),
        MTLSRule(match="CN=ops", roles=["admin"]),
    ])
    i = m.identity("CN=transformer-1,O=acme,C=DE")
    assert i.roles == ("predictor",) and i.names == ("fraud*",) and i.source == "mtls"
    assert m.identity("CN=ops,O=other").roles == ("admin",)  # CN-only rule
    assert m.identity("CN=transformer-1,O=evil,C=DE").roles == ()
    # an escaped comma in a CN cannot forge another organisation
    assert m.identity("CN=transformer-1\\,O=acme,O=evil,C=DE").roles == ()


def test_a_star_never_spans_attributes() -> None:
    m = SubjectMapper([MTLSRule(match="CN=svc-*,O=acme", roles=["admin"])])
    assert m.identity("CN=svc-a,O=acme").roles == ("admin",)
    assert m.identity("CN=svc-a,O=evil,O=acme").roles == ()
    assert m.identity("CN=svc-a\\,O=x,O=acme").roles == ("admin",)  # one CN with a comma
