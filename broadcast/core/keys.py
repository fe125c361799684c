"""Every Redis key the service uses, in one place.

All keys start with the namespace (``BROADCAST_NAMESPACE``, default ``bc``), so several
deployments or test runs can share one Redis. RQ's own keys (``rq:job:…``) are RQ's; our queue
names carry the namespace too.

Registry (lives until changed). Small hashes are bucketed so that Redis keeps them in its compact
listpack encoding (at most 128 entries by default since Redis 7): 128 records a bucket, and the
phone, push-token and external-id indexes spread over ``INDEX_BUCKETS`` buckets by CRC-32.
    {ns}:areas                      hash   area code -> JSON {name, level, parent}: official units, grids, buildings
    {ns}:areas:version              string bumped on every area load (caches compare it)
    {ns}:res:next                   string last registry id (rid) handed out (INCR)
    {ns}:res:{rid >> 7}             hash   rid -> compact record (see audiences.residents.encode_record)
    {ns}:res:ext:{crc32 % B}        hash   external id -> rid
    {ns}:res:phone:{crc32 % B}      hash   E.164 phone -> rid, or several rids joined by spaces (a shared phone)
    {ns}:res:push:{crc32 % B}       hash   push token (registration id) -> rid
    {ns}:members:{community}        string the community's registry entries in roster order, packed
                                           8 bytes each: rid u32, place number u16, profile u16
    {ns}:places:{community}         string JSON list of the community's places, sorted: building codes, and
                                           grid or committee codes for people attached to a whole grid
                                           or committee (volunteers, key units without a building)
    {ns}:communities                set    communities that have registry entries
    {ns}:community:counts           hash   community -> JSON {"residents", "key_unit_contacts", "volunteers"}
    {ns}:volunteers                 hash   volunteer id -> volunteer JSON
    {ns}:grid:volunteers:{grid}     set    volunteer ids covering a grid
    {ns}:building:volunteers:{b}    set    volunteer ids covering a building
    {ns}:community:volunteers:{c}   set    volunteer ids of a committee (its community workers among them)
    {ns}:key_units                  hash   key unit id -> key unit JSON (with its contacts)
    {ns}:screens                    hash   screen id -> screen JSON
    {ns}:screens:{community}        hash   screen id -> building code, for the screens of one committee
    {ns}:offline-screens            set    screen ids whose last will said "offline" (until they say "online")
    {ns}:imports:running            hash   import id -> JSON {kind, source, rows, written, started} while an import
                                           writes; left behind by one that died before its switch
    {ns}:groups                     hash   custom group name -> JSON {title, size}
    {ns}:group:{name}               set    rids of a custom group's members

Alerts (kept while the alert matters; expire after ``ALERT_RETENTION``)
    {ns}:alert:next                 string last alert id handed out (INCR)
    {ns}:alert:{id}                 string alert JSON
    {ns}:alert:idem:{digest}        string alert id issued for a client's idempotency key (24 h); digest is
                                           SHA-256 of the composing account and its request_id, so one
                                           officer's key never names another officer's alert
    {ns}:alert:{id}:lift            string id of the cancel message (解除) sent for alert {id}: one however
                                           often it is asked for; no request can name this key (24 h)
    {ns}:alerts:active              zset   alert id scored by issue time (recent first for replies)
    {ns}:alert:{id}:roster          string rid u32 per ordinal (ordinal o at bytes 4o..4o+3)
    {ns}:alert:{id}:ranges          hash   area code -> "start:end" ordinal range, every level
    {ns}:alert:{id}:communities     string JSON [[community code, start], …] in roster order
    {ns}:alert:{id}:plan            hash   planned counts: "targeted", "ch:{channel}", "batches"
    {ns}:alert:{id}:batches         list   JSON batch specs {queue, channel, ranges}, in enqueue order
    {ns}:alert:{id}:bits:{state}    string bitmap by ordinal; state is "{event}" (recipient level),
                                           "{event}:{channel}" (per channel; "voice.1" for an escalation
                                           round), "attempted:{channel}", "vulnerable" (frozen with the
                                           roster) or "closed" (a volunteer settled it in person)
    {ns}:alert:{id}:counts          hash   "{event}" totals, "{event}:{channel}", "{event}@{community#}",
                                           "duplicates", "retried", "parts:{channel}" (SMS parts accepted),
                                           "error:{channel}:{code}" (failures by provider error code)
    {ns}:alert:{id}:slots           string 16 bytes per ordinal: first sent/delivered/acknowledged
                                           times (u32 seconds after issue), channel, ack method, error code
    {ns}:alert:{id}:screens         hash   screen id -> state (queued, failed, published, shown)
    {ns}:alert:{id}:stage           string u4 per ordinal (BITFIELD #ordinal): where the recipient's sending is:
                                           0 queued, 1 sent, 2 rerouted to the next channel, 3 delivered,
                                           4 failed (no channel left); counted as "stage:{name}" in counts
    {ns}:alert:{id}:steps           hash   escalation step -> when it finished (every notice it owed sent)
    {ns}:alert:{id}:work:{name}     hash   a step's or help case's work list, frozen by its first run
                                           ("e{step}", "h{ordinal}"): notice id -> JSON {phone, text}
    {ns}:alert:{id}:notices         hash   notice id ("{kind}:{volunteer}", "help:{ordinal}:{volunteer}")
                                           -> when the provider accepted it (or "failed:{code}")
    {ns}:alert:{id}:notice-attempts hash   notice id -> when it was handed to the provider (sent or not)
    {ns}:alert:{id}:outcomes        hash   ordinal -> JSON {outcome, volunteer, at, request}: door-to-door results
    {ns}:alert:{id}:replies         stream replies we could not read as yes or help {ordinal, body, at}, capped
    {ns}:alert:{id}:reply-ids       set    provider message ids of those replies, so a replayed one counts once
    {ns}:alert:{id}:help:asked      zset   ordinal of each resident who asked for help, scored by when they
                                           first asked (epoch seconds): the console lists them newest first
    {ns}:alert:{id}:help:handling   hash   ordinal -> JSON {state: "assigned"|"handled", assignee, note, by, at}:
                                           what the duty room did about a help request (audited as "help_case")
    {ns}:alert:{id}:reports         hash   field report id -> report JSON (category, text, place, reporter, photo …)
    {ns}:alert:{id}:reports:order   zset   field report id scored by when it was received (epoch seconds)
    {ns}:alert:{id}:reports:next    string last field report id handed out (INCR)
    {ns}:alert:{id}:reports:sent    hash   "{reporter}:{request id}" -> field report id: a report sent twice
                                           (a phone that was offline, a provider's retry) is stored once
    {ns}:alert:{id}:reports:triage  hash   field report id -> JSON {state: seen|assigned|resolved, assignee, note,
                                           by, at}: what the duty room did about it (audited as "field_report")

Drills (kept ``DRILL_RETENTION``: a drill is compared with the next one of its kind, months later)
    {ns}:drills:{event}             zset   drill alert ids of one event type scored by issue time
    {ns}:drill:{id}:scorecard       string JSON: the drill's figures per committee and street, kept after the
                                           alert's own keys have expired

Files (outside Redis: ``broadcast.core.storage``, under ``BROADCAST_FILES_DIR``)
    photos/{alert}/{name}.jpg       a field report's photo, re-encoded without its metadata

Console (users and their credentials; tokens are stored only as SHA-256 digests)
    {ns}:users                      hash   user name -> user JSON (role, areas, argon2 password hash, disabled)
    {ns}:session:{digest}           hash   "user", "csrf", "generation" (the account's when opened; a password
                                           change or disable bumps the account's and so ends the session),
                                           "created", "origin"; expires ``session_hours`` after last use
    {ns}:apitoken:{digest}          string JSON {"user", "label", "created"}; kept until revoked
    {ns}:user:{name}:apitokens      hash   token label -> digest, to list and revoke a user's tokens
    {ns}:login:fail:{who}           string sign-in attempts of one account ("user:{name}") or address ("ip:{addr}")
                                           within the current window, counted before the password is checked;
                                           a success clears the account's (expires with the window)

Operations
    {ns}:ratelimit:{account}        string GCRA theoretical arrival time for one provider account
    {ns}:ratelimit:{account}:learnt hash   the rate learnt from the provider's refusals: "rate", "mode"
                                           (start, steady), "changed", "cut"; expires a minute after the last
    {ns}:stats                      hash   service-wide counters (unmatched and replayed replies, refused webhooks)
    {ns}:watchdog                   string the lock of the worker doing the watchdog pass (lapses in 10 s)
    {ns}:lease:{work}               string the run holding a batch, step or help case ("{alert}-b{…}"),
                                           renewed every 2 s, lapses 10 s after its run died
    {ns}:audit                      stream who did what, when, from where (append-only)
    {ns}:secret                     string the signing key when none is configured
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

RESIDENT_BUCKET_BITS = 7
INDEX_BUCKETS = 1 << 16


def index_bucket(text: str) -> int:
    """The bucket of a phone or external id: CRC-32, stable across processes and versions."""
    return zlib.crc32(text.encode()) % INDEX_BUCKETS


ALERT_RETENTION_SECONDS = 30 * 24 * 3600
DRILL_RETENTION_SECONDS = 3 * 366 * 24 * 3600


@dataclass(frozen=True)
class Keys:
    """Builds key names under one namespace."""

    ns: str = "bc"

    # Registry
    @property
    def areas(self) -> str:
        return f"{self.ns}:areas"

    @property
    def areas_version(self) -> str:
        return f"{self.ns}:areas:version"

    @property
    def resident_next(self) -> str:
        return f"{self.ns}:res:next"

    def resident_bucket(self, rid: int) -> str:
        return f"{self.ns}:res:{rid >> RESIDENT_BUCKET_BITS}"

    def resident_by_external(self, external_id: str) -> str:
        return f"{self.ns}:res:ext:{index_bucket(external_id)}"

    def resident_by_phone(self, phone: str) -> str:
        return f"{self.ns}:res:phone:{index_bucket(phone)}"

    def resident_by_push_token(self, token: str) -> str:
        return f"{self.ns}:res:push:{index_bucket(token)}"

    def members(self, community: str) -> str:
        return f"{self.ns}:members:{community}"

    def places(self, community: str) -> str:
        return f"{self.ns}:places:{community}"

    @property
    def communities(self) -> str:
        return f"{self.ns}:communities"

    @property
    def community_counts(self) -> str:
        return f"{self.ns}:community:counts"

    @property
    def volunteers(self) -> str:
        return f"{self.ns}:volunteers"

    def grid_volunteers(self, grid: str) -> str:
        return f"{self.ns}:grid:volunteers:{grid}"

    def building_volunteers(self, building: str) -> str:
        return f"{self.ns}:building:volunteers:{building}"

    @property
    def key_units(self) -> str:
        return f"{self.ns}:key_units"

    @property
    def screens(self) -> str:
        return f"{self.ns}:screens"

    @property
    def screens_offline(self) -> str:
        return f"{self.ns}:offline-screens"

    def community_volunteers(self, community: str) -> str:
        return f"{self.ns}:community:volunteers:{community}"

    def community_screens(self, community: str) -> str:
        return f"{self.ns}:screens:{community}"

    @property
    def imports_running(self) -> str:
        return f"{self.ns}:imports:running"

    @property
    def groups(self) -> str:
        return f"{self.ns}:groups"

    def group(self, name: str) -> str:
        return f"{self.ns}:group:{name}"

    # Alerts
    @property
    def alert_next(self) -> str:
        return f"{self.ns}:alert:next"

    def alert(self, alert_id: str) -> str:
        return f"{self.ns}:alert:{alert_id}"

    def alert_idempotency(self, digest: str) -> str:
        return f"{self.ns}:alert:idem:{digest}"

    def alert_lift(self, alert_id: str) -> str:
        return f"{self.ns}:alert:{alert_id}:lift"

    @property
    def alerts_active(self) -> str:
        return f"{self.ns}:alerts:active"

    def roster(self, alert_id: str) -> str:
        return f"{self.ns}:alert:{alert_id}:roster"

    def ranges(self, alert_id: str) -> str:
        return f"{self.ns}:alert:{alert_id}:ranges"

    def roster_communities(self, alert_id: str) -> str:
        return f"{self.ns}:alert:{alert_id}:communities"

    def plan(self, alert_id: str) -> str:
        return f"{self.ns}:alert:{alert_id}:plan"

    def batches(self, alert_id: str) -> str:
        return f"{self.ns}:alert:{alert_id}:batches"

    def bits(self, alert_id: str, state: str) -> str:
        return f"{self.ns}:alert:{alert_id}:bits:{state}"

    def counts(self, alert_id: str) -> str:
        return f"{self.ns}:alert:{alert_id}:counts"

    def slots(self, alert_id: str) -> str:
        return f"{self.ns}:alert:{alert_id}:slots"

    def alert_screens(self, alert_id: str) -> str:
        return f"{self.ns}:alert:{alert_id}:screens"

    def alert_steps(self, alert_id: str) -> str:
        return f"{self.ns}:alert:{alert_id}:steps"

    def alert_notices(self, alert_id: str) -> str:
        return f"{self.ns}:alert:{alert_id}:notices"

    def alert_notice_attempts(self, alert_id: str) -> str:
        return f"{self.ns}:alert:{alert_id}:notice-attempts"

    def alert_work(self, alert_id: str, name: str) -> str:
        return f"{self.ns}:alert:{alert_id}:work:{name}"

    def alert_stage(self, alert_id: str) -> str:
        return f"{self.ns}:alert:{alert_id}:stage"

    def alert_outcomes(self, alert_id: str) -> str:
        return f"{self.ns}:alert:{alert_id}:outcomes"

    def alert_replies(self, alert_id: str) -> str:
        return f"{self.ns}:alert:{alert_id}:replies"

    def reply_ids(self, alert_id: str) -> str:
        return f"{self.ns}:alert:{alert_id}:reply-ids"

    def help_asked(self, alert_id: str) -> str:
        return f"{self.ns}:alert:{alert_id}:help:asked"

    def help_handling(self, alert_id: str) -> str:
        return f"{self.ns}:alert:{alert_id}:help:handling"

    def alert_reports(self, alert_id: str) -> str:
        return f"{self.ns}:alert:{alert_id}:reports"

    def alert_report_order(self, alert_id: str) -> str:
        return f"{self.ns}:alert:{alert_id}:reports:order"

    def alert_report_next(self, alert_id: str) -> str:
        return f"{self.ns}:alert:{alert_id}:reports:next"

    def alert_report_requests(self, alert_id: str) -> str:
        return f"{self.ns}:alert:{alert_id}:reports:sent"

    def alert_report_triage(self, alert_id: str) -> str:
        return f"{self.ns}:alert:{alert_id}:reports:triage"

    def drills(self, event: str) -> str:
        return f"{self.ns}:drills:{event}"

    def drill_scorecard(self, alert_id: str) -> str:
        return f"{self.ns}:drill:{alert_id}:scorecard"

    def alert_keys(self, alert_id: str) -> str:
        """A pattern matching every key of one alert (for retention and tests)."""
        return f"{self.ns}:alert:{alert_id}:*"

    # Console
    @property
    def users(self) -> str:
        return f"{self.ns}:users"

    def session(self, digest: str) -> str:
        return f"{self.ns}:session:{digest}"

    def api_token(self, digest: str) -> str:
        return f"{self.ns}:apitoken:{digest}"

    def user_api_tokens(self, user: str) -> str:
        return f"{self.ns}:user:{user}:apitokens"

    def login_failures(self, who: str) -> str:
        return f"{self.ns}:login:fail:{who}"

    # Operations
    def rate_limit(self, account: str) -> str:
        return f"{self.ns}:ratelimit:{account}"

    def rate_limit_learnt(self, account: str) -> str:
        return f"{self.ns}:ratelimit:{account}:learnt"

    @property
    def stats(self) -> str:
        return f"{self.ns}:stats"

    @property
    def watchdog(self) -> str:
        return f"{self.ns}:watchdog"

    def lease(self, work: str) -> str:
        return f"{self.ns}:lease:{work}"

    @property
    def audit(self) -> str:
        return f"{self.ns}:audit"

    @property
    def secret(self) -> str:
        return f"{self.ns}:secret"

    # RQ queue names
    def queue(self, name: str) -> str:
        return f"{self.ns}:{name}"


def as_text(value: object) -> str:
    """A Redis reply as text (our clients do not decode responses)."""
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def as_bytes(value: object) -> bytes:
    """A Redis reply as bytes."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"unexpected Redis reply {type(value).__name__}")
