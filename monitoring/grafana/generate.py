#!/usr/bin/env python3
"""Generates the Grafana dashboards of monitoring/grafana/dashboards/.

One source for all ten dashboards, so they share one layout and one set of
conventions (docs/monitoring.md, "Dashboards"):

* a stable `uid` (`zs-...`), `schemaVersion` 39, the tags `zs-observe` and the
  service, links to the other zs-observe dashboards, auto-refresh;
* a `datasource` variable (type prometheus, or loki for the logs explorer) that
  every panel and target uses as `${datasource}`;
* `job`, `instance` and `environment` variables on the Prometheus dashboards,
  applied to every selector (`up` has no `environment`);
* `$__rate_interval` in every `rate()` / `increase()`;
* a unit and a description on every panel, and no panel without a query;
* firing alerts (`ALERTS`) as annotations.

Only metrics of monitoring/catalog/*.toml (plus `up` and `ALERTS`) are named; the
tests check that (tests/tests/monitoring_*.rs) and run every Prometheus query
against a real Prometheus scraping the running examples
(tests/tests/monitoring_dashboards.rs).

The JSON files are what Grafana provisions and what the tests read; regenerate
them after an edit here and commit both:

    python3 monitoring/grafana/generate.py
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards"

# The label filter of every Prometheus selector.
S = 'job=~"$job", instance=~"$instance", environment=~"$environment"'
# `up` is Prometheus' own series: no `environment` label.
S_UP = 'job=~"$job", instance=~"$instance"'
RI = "$__rate_interval"


def matchers(extra: str) -> str:
    """`a=x, b!=y` -> `a="x", b!="y"` (written without quotes in the calls below, so
    the f-strings stay free of backslashes); text with quotes passes unchanged."""
    if not extra or '"' in extra:
        return extra
    out = []
    for part in extra.split(","):
        m = re.fullmatch(r"\s*(\w+)(=~|!~|!=|=)(.*?)\s*", part)
        assert m, f"bad matcher {part!r}"
        out.append(f'{m[1]}{m[2]}"{m[3]}"')
    return ", ".join(out)


def sel(metric: str, extra: str = "") -> str:
    """`metric{<dashboard filter>, extra}`; `extra` as in `matchers`."""
    extra = matchers(extra)
    return f"{metric}{{{S}{', ' + extra if extra else ''}}}"


def rate(metric: str, extra: str = "") -> str:
    return f"rate({sel(metric, extra)}[{RI}])"


def zero_if_none(expr: str) -> str:
    """`expr or on() vector(0)`: a count or rate of something that has not happened
    yet (no series for that label value) is 0, not "no data"."""
    return f"({expr} or on() vector(0))"


def ratio(good: str, total: str) -> str:
    return f"{good}\n/\n{total}"


def quantiles(metric: str, by: str = "", extra: str = "", qs=(0.5, 0.95, 0.99)):
    """histogram_quantile targets for p50/p95/p99 of a catalog histogram."""
    group = f"le{', ' + by if by else ''}"
    out = []
    for q in qs:
        legend = f"p{int(q * 100)}" + (" {{" + by + "}}" if by else "")
        out.append(
            (
                f"histogram_quantile({q}, sum by ({group}) ({rate(metric + '_bucket', extra)}))",
                legend,
            )
        )
    return out


# ---------------------------------------------------------------------------------
# Dashboard model


class Dashboard:
    def __init__(self, uid, title, description, tags, kind="prometheus", job=None, build_info=None):
        self.uid = uid
        self.title = title
        self.description = description
        self.tags = ["zs-observe", *tags]
        self.kind = kind
        self.job = job
        self.build_info = build_info
        self.panels = []
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1
        self.variables = []

    # --- layout ---
    def row(self, title):
        self._newline()
        self.panels.append(
            {
                "id": self._id(),
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def _newline(self):
        if self.x > 0:
            self.y += self.row_h
        self.x = 0
        self.row_h = 0

    def _id(self):
        i = self.next_id
        self.next_id += 1
        return i

    def _place(self, w, h):
        if self.x + w > 24:
            self._newline()
        pos = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    # --- panels ---
    def panel(
        self,
        kind,
        title,
        description,
        targets,
        unit,
        w=12,
        h=8,
        instant=False,
        options=None,
        defaults=None,
        custom=None,
        transformations=None,
        time_from=None,
        fmt=None,
    ):
        assert targets, f"{title}: a panel without a query"
        assert unit, f"{title}: a panel without a unit"
        assert description, f"{title}: a panel without a description"
        ds = {"type": self.kind, "uid": "${datasource}"}
        tlist = []
        for i, t in enumerate(targets):
            expr, legend = t if isinstance(t, tuple) else (t, "")
            target = {"refId": chr(ord("A") + i), "datasource": ds, "expr": expr}
            if self.kind == "prometheus":
                target["legendFormat"] = legend or "__auto"
                target["range"] = not instant
                target["instant"] = instant
                if fmt:
                    target["format"] = fmt
            else:
                target["queryType"] = "instant" if instant else "range"
                if legend:
                    target["legendFormat"] = legend
            tlist.append(target)
        fd = {"unit": unit}
        if kind in ("timeseries",):
            fd["custom"] = {
                "drawStyle": "line",
                "lineWidth": 1,
                "fillOpacity": 10,
                "showPoints": "never",
                "spanNulls": False,
                "stacking": {"mode": "none", "group": "A"},
            }
        if custom:
            fd.setdefault("custom", {}).update(custom)
        fd["color"] = {"mode": "palette-classic"}
        fd["thresholds"] = {"mode": "absolute", "steps": [{"color": "green", "value": None}]}
        if defaults:
            fd.update(defaults)
        p = {
            "id": self._id(),
            "type": kind,
            "title": title,
            "description": description,
            "datasource": ds,
            "gridPos": self._place(w, h),
            "fieldConfig": {"defaults": fd, "overrides": []},
            "options": options or default_options(kind),
            "targets": tlist,
        }
        if transformations:
            p["transformations"] = transformations
        if time_from:
            p["timeFrom"] = time_from
        self.panels.append(p)
        return p

    def stat(self, title, description, targets, unit, w=6, h=4, thresholds=None, mappings=None):
        d = {"color": {"mode": "thresholds"}}
        if thresholds:
            d["thresholds"] = {"mode": "absolute", "steps": thresholds}
        if mappings:
            d["mappings"] = mappings
        return self.panel("stat", title, description, targets, unit, w, h, instant=False, defaults=d)

    def ts(self, title, description, targets, unit, w=12, h=8, stack=False, **kw):
        custom = {"stacking": {"mode": "normal", "group": "A"}, "fillOpacity": 40} if stack else None
        return self.panel("timeseries", title, description, targets, unit, w, h, custom=custom, **kw)

    # --- variables ---
    def standard_variables(self):
        if self.kind == "prometheus":
            self.variables.append(datasource_var("prometheus", "Prometheus", "prometheus"))
            self.variables.append(
                query_var(
                    "job",
                    "Job",
                    f"label_values({self.build_info}, job)",
                    current=self.job,
                    multi=False,
                    include_all=False,
                )
            )
            self.variables.append(
                query_var(
                    "instance",
                    "Instance",
                    f'label_values({self.build_info}{{job=~"$job"}}, instance)',
                )
            )
            self.variables.append(
                query_var(
                    "environment",
                    "Environment",
                    f'label_values({self.build_info}{{job=~"$job"}}, environment)',
                )
            )

    def json(self):
        self._newline()
        annotations = [
            {
                "builtIn": 1,
                "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                "enable": True,
                "hide": True,
                "iconColor": "rgba(0, 211, 255, 1)",
                "name": "Annotations & Alerts",
                "type": "dashboard",
            }
        ]
        if self.kind == "prometheus":
            annotations.append(
                {
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "enable": True,
                    "hide": False,
                    "iconColor": "red",
                    "name": "Firing alerts",
                    "expr": f'ALERTS{{alertstate="firing", {S_UP}}}',
                    "step": "30s",
                    "titleFormat": "{{alertname}}",
                    "textFormat": "{{severity}}: {{instance}}",
                    "useValueForTime": False,
                }
            )
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": self.tags,
            "timezone": "browser",
            "editable": False,
            "graphTooltip": 1,
            "schemaVersion": 39,
            "version": 1,
            "refresh": "30s",
            "time": {"from": "now-1h", "to": "now"},
            "timepicker": {},
            "fiscalYearStartMonth": 0,
            "liveNow": False,
            "weekStart": "",
            "links": [
                {
                    "type": "dashboards",
                    "title": "zs-observe dashboards",
                    "tags": ["zs-observe"],
                    "asDropdown": True,
                    "includeVars": False,
                    "keepTime": True,
                    "icon": "external link",
                    "targetBlank": False,
                    "tooltip": "",
                    "url": "",
                }
            ],
            "annotations": {"list": annotations},
            "templating": {"list": self.variables},
            "panels": self.panels,
        }


def default_options(kind):
    if kind == "timeseries":
        return {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    if kind == "stat":
        return {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": "auto",
        }
    if kind == "gauge":
        return {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "showThresholdLabels": False,
            "showThresholdMarkers": True,
        }
    if kind == "bargauge":
        return {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "horizontal",
            "displayMode": "gradient",
            "showUnfilled": True,
        }
    if kind == "piechart":
        return {
            "reduceOptions": {"calcs": ["mean"], "fields": "", "values": False},
            "pieType": "donut",
            "legend": {"displayMode": "table", "placement": "right", "values": ["percent"]},
            "tooltip": {"mode": "single"},
        }
    if kind == "table":
        return {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    if kind == "state-timeline":
        return {
            "mergeValues": True,
            "showValue": "never",
            "alignValue": "left",
            "rowHeight": 0.9,
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        }
    if kind == "logs":
        return {
            "showTime": True,
            "wrapLogMessage": True,
            "prettifyLogMessage": False,
            "enableLogDetails": True,
            "sortOrder": "Descending",
            "dedupStrategy": "none",
        }
    return {}


def datasource_var(query, label, default_uid):
    return {
        "name": "datasource",
        "label": label,
        "type": "datasource",
        "query": query,
        "current": {"selected": True, "text": label, "value": default_uid},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "refresh": 1,
        "regex": "",
        "options": [],
    }


def query_var(name, label, query, current=None, multi=True, include_all=True, all_value=".*"):
    var = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "definition": query,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,
        "sort": 1,
        "hide": 0,
        "multi": multi,
        "includeAll": include_all,
        "regex": "",
        "options": [],
    }
    if include_all:
        var["allValue"] = all_value
        var["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    elif current:
        var["current"] = {"selected": True, "text": current, "value": current}
    return var


# Value mappings and thresholds shared by several panels.
RATIO_THRESHOLDS = [
    {"color": "red", "value": None},
    {"color": "yellow", "value": 0.9},
    {"color": "green", "value": 0.95},
]
STATUS_MAPPINGS = [
    {"type": "range", "options": {"from": 0.95, "to": 1, "result": {"text": "HEALTHY", "color": "green", "index": 0}}},
    {"type": "range", "options": {"from": 0.7, "to": 0.95, "result": {"text": "DEGRADED", "color": "yellow", "index": 1}}},
    {"type": "range", "options": {"from": 0, "to": 0.7, "result": {"text": "CRITICAL", "color": "red", "index": 2}}},
]
UP_MAPPINGS = [
    {"type": "value", "options": {"0": {"text": "DOWN", "color": "red", "index": 0}, "1": {"text": "UP", "color": "green", "index": 1}}}
]


# ---------------------------------------------------------------------------------
# ZeroState (seed 001): network overview, execution performance, economic activity,
# system health


def zerostate(uid, title, description):
    d = Dashboard(uid, title, description, ["zerostate"], job="zerostate-node", build_info="zerostate_build_info")
    d.standard_variables()
    return d


def network_overview():
    d = zerostate(
        "zs-network-overview",
        "ZeroState / Network Overview",
        "P2P networking layer health (seed 001 dashboard 1): connections, peers, bandwidth, message delivery, gossip, relays, DHT.",
    )
    d.row("Health")
    d.stat(
        "Network Health Overview",
        "Seed 001 'Network Health Overview': active connections (warning below 3, the seed's LowPeerConnections threshold) "
        "and the node's p2p:connectivity readiness check (1 pass, 0.5 warn, 0 fail).",
        [
            (f'sum({sel("zerostate_p2p_connections", "state=active")})', "active connections"),
            (f'min({sel("zerostate_health_check_status", "check=p2p:connectivity")})', "p2p:connectivity"),
        ],
        "short",
        thresholds=[{"color": "red", "value": None}, {"color": "yellow", "value": 0.5}, {"color": "green", "value": 1}],
    )
    d.stat(
        "Total Peers Discovered",
        "Seed 001 'Total Peers Discovered' (DHT discovery effectiveness): peers known to the node, by state "
        "(connected, discovered but not connected, failed).",
        [(f'sum by (state) ({sel("zerostate_p2p_peers")})', "{{state}}")],
        "short",
        w=6,
    )
    d.stat(
        "Message Success Rate",
        "Seed 001 'Message Success Rate': share of P2P messages delivered successfully (warning below 95 %).",
        [
            ratio(
                f'sum({rate("zerostate_p2p_messages_total", "status=success")})',
                f'sum({rate("zerostate_p2p_messages_total")})',
            )
        ],
        "percentunit",
        thresholds=RATIO_THRESHOLDS,
    )
    d.stat(
        "Peer Ping Success",
        "Seed 001 'Health Check Status' (availability half): share of liveness pings to connected peers that were answered.",
        [
            ratio(
                f'sum({rate("zerostate_p2p_peer_pings_total", "outcome=ok")})',
                f'sum({rate("zerostate_p2p_peer_pings_total")})',
            )
        ],
        "percentunit",
        thresholds=RATIO_THRESHOLDS,
    )
    d.row("Traffic")
    d.ts(
        "Bandwidth Usage (TX/RX)",
        "Seed 001 'Bandwidth Usage (TX/RX)': bytes per second of serialized P2P messages sent (tx) and received (rx).",
        [(f'sum by (direction) ({rate("zerostate_p2p_bandwidth_bytes_total")})', "{{direction}}")],
        "Bps",
    )
    d.ts(
        "Messages by Type and Status",
        "Seed 001 'Message Success Rate' (detail): P2P messages per second by type (gossip, request, response) and delivery status.",
        [(f'sum by (type, status) ({rate("zerostate_p2p_messages_total")})', "{{type}} {{status}}")],
        "cps",
    )
    d.ts(
        "Active Connections by State",
        "Seed 001 'Active Connections by State' (connection pool health): connections that carried a message in the last round (active) and idle ones.",
        [(f'sum by (state) ({sel("zerostate_p2p_connections")})', "{{state}}")],
        "short",
        stack=True,
    )
    d.ts(
        "Health Check Status (peer latency)",
        "Seed 001 'Health Check Status' (latency half): round trip of liveness pings to connected peers, p50/p95/p99 "
        "(the seed's critical threshold is 5 s).",
        quantiles("zerostate_p2p_peer_ping_duration_seconds"),
        "s",
    )
    d.row("Protocols")
    d.ts(
        "Gossip Propagation",
        "Seed 001 'Gossip Propagation' (message distribution rate): gossip messages per second published by this node, delivered to peers, and duplicates not forwarded.",
        [(f'sum by (status) ({rate("zerostate_p2p_gossip_messages_total")})', "{{status}}")],
        "cps",
        w=8,
    )
    d.ts(
        "Circuit Relay Usage",
        "Seed 001 'Circuit Relay Usage' (NAT traversal): circuit-relay connections per second to peers that cannot be dialled directly, by outcome.",
        [(f'sum by (outcome) ({rate("zerostate_p2p_relay_connections_total")})', "{{outcome}}")],
        "ops",
        w=8,
    )
    d.ts(
        "DHT Operations",
        "Seed 001 'DHT Operations' (PUT/GET/FIND): DHT operations per second by operation and outcome (a get or find that finds nothing is an error).",
        [(f'sum by (operation, outcome) ({rate("zerostate_p2p_dht_operations_total")})', "{{operation}} {{outcome}}")],
        "ops",
        w=8,
    )
    d.ts(
        "P2P Operation Latency (p95)",
        "Not a seed panel: p95 time of connect, send and receive, and of DHT put/get/find, to explain a drop in message success.",
        quantiles("zerostate_p2p_operation_duration_seconds", by="operation", qs=(0.95,))
        + quantiles("zerostate_p2p_dht_operation_duration_seconds", by="operation", qs=(0.95,)),
        "s",
        w=12,
    )
    d.ts(
        "P2P Operation Errors",
        "Not a seed panel: failed P2P operations per second (a failed connect is a peer marked failed).",
        [
            (
                zero_if_none(f'sum by (operation) ({rate("zerostate_p2p_operations_total", "outcome!=ok")})'),
                "{{operation}}",
            )
        ],
        "ops",
        w=12,
    )
    return d


def execution_performance():
    d = zerostate(
        "zs-execution-performance",
        "ZeroState / Execution Performance",
        "Task execution and the WASM runtime (seed 001 dashboard 2): success rate, throughput, latency, memory, guilds, cost, exit codes, receipts.",
    )
    d.row("Summary")
    d.stat(
        "Task Execution Success Rate",
        "Seed 001 'Task Execution Success Rate': share of executed tasks with outcome ok (the seed warns below 90 %).",
        [
            ratio(
                f'sum({rate("zerostate_tasks_executed_total", "outcome=ok")})',
                f'sum({rate("zerostate_tasks_executed_total")})',
            )
        ],
        "percentunit",
        thresholds=[{"color": "red", "value": None}, {"color": "yellow", "value": 0.5}, {"color": "green", "value": 0.9}],
    )
    d.stat(
        "Active Guilds",
        "Seed 001 'Active Guilds': guilds that exist right now (the seed's NoActiveGuilds alert fires at 0).",
        [(f'sum({sel("zerostate_guilds_active")})', "guilds")],
        "short",
        thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 1}],
    )
    d.stat(
        "Tasks/sec",
        "Seed 001 'Tasks/sec': tasks executed per second, all outcomes.",
        [(f'sum({rate("zerostate_tasks_executed_total")})', "tasks/s")],
        "ops",
    )
    d.stat(
        "Tasks Executing",
        "Not a seed panel: tasks executing right now, and tasks submitted per second to the node's guilds.",
        [
            (f'sum({sel("zerostate_tasks_executing")})', "executing"),
            (f'sum({rate("zerostate_tasks_submitted_total")})', "submitted/s"),
        ],
        "short",
    )
    d.row("Latency and resources")
    d.ts(
        "Task Duration (p50/p95/p99)",
        "Seed 001 'Avg Task Duration (p50/p95/p99)': time to execute one WASM task (the seed warns at p95 > 25 s; the limit is 30 s).",
        quantiles("zerostate_wasm_execution_duration_seconds"),
        "s",
    )
    d.ts(
        "WASM Memory Usage",
        "Seed 001 'WASM Memory Usage': linear memory of WASM tasks after their run, p50/p95 (the seed warns at p95 > 100 MB; the limit is 128 MiB).",
        quantiles("zerostate_wasm_memory_bytes", qs=(0.5, 0.95)),
        "bytes",
    )
    d.ts(
        "Task Results (Success/Failure)",
        "Seed 001 'Task Results (Success/Failure)': executed tasks per second by outcome, stacked.",
        [(f'sum by (outcome) ({rate("zerostate_tasks_executed_total")})', "{{outcome}}")],
        "ops",
        stack=True,
    )
    d.ts(
        "Guild Lifecycle",
        "Seed 001 'Guild Lifecycle' (created/dissolved/active): guild operations per second (create, join, dissolve) "
        "and the active guilds and their members (right axis).",
        [
            (f'sum by (operation) ({rate("zerostate_guild_operations_total", "outcome=ok")})', "{{operation}}/s"),
            (f'sum({sel("zerostate_guilds_active")})', "active guilds"),
            (f'sum({sel("zerostate_guild_members")})', "members"),
        ],
        "short",
    )
    d.row("Cost, exits and receipts")
    d.ts(
        "Task Cost Distribution",
        "Seed 001 'Task Cost Distribution': WASM fuel per task, p50/p95, by type (estimated = the budget, actual = consumed, capped = runs stopped by the budget).",
        quantiles("zerostate_task_cost_units", by="type", qs=(0.5, 0.95)),
        "short",
        w=8,
    )
    d.panel(
        "piechart",
        "WASM Exit Codes",
        "Seed 001 'WASM Exit Codes': share of WASM exits (ok, trap, out_of_fuel = the timeout, invalid module) over the time range.",
        [(f'sum by (exit) ({rate("zerostate_wasm_exit_codes_total")})', "{{exit}}")],
        "ops",
        w=8,
    )
    d.ts(
        "Receipt Generation Rate",
        "Seed 001 'Receipt Generation Rate': execution receipts per second by stage (generated, signed with ed25519, verified, rejected).",
        [(f'sum by (status) ({rate("zerostate_receipts_total")})', "{{status}}")],
        "ops",
        w=8,
    )
    return d


def economic_activity():
    d = zerostate(
        "zs-economic-activity",
        "ZeroState / Economic Activity",
        "Payments, channels, reputation and network economics (seed 001 dashboard 3), plus the auctions and escrows of seed 002.",
    )
    d.row("Summary")
    d.stat(
        "Total Value Locked (TVL)",
        "Seed 001 'Total Value Locked (TVL)': value locked in open payment channels and unreleased escrows (units of the node's currency).",
        [(f'sum({sel("zerostate_total_value_locked_units")})', "TVL")],
        "short",
        w=5,
    )
    d.stat(
        "Active Payment Channels",
        "Seed 001 'Active Payment Channels': payment channels open right now and not disputed (the seed's LowActiveChannels is below 5).",
        [(f'sum({sel("zerostate_payment_channels", "state=active")})', "channels")],
        "short",
        w=5,
    )
    d.stat(
        "Active Participants",
        "Seed 001 'Active Participants': peers taking part in the economy (an open channel or a reputation record, not blacklisted).",
        [(f'sum({sel("zerostate_participants_active")})', "participants")],
        "short",
        w=5,
    )
    d.stat(
        "Payment Success Rate",
        "Seed 001 'Payment Success Rate': share of channel payments with outcome ok (the seed warns above 5 % failures).",
        [
            ratio(
                f'sum({rate("zerostate_payments_total", "outcome=ok")})',
                f'sum({rate("zerostate_payments_total")})',
            )
        ],
        "percentunit",
        w=5,
        thresholds=RATIO_THRESHOLDS,
    )
    d.stat(
        "Blacklisted Peers",
        "Seed 001 'Blacklisted Peers': executors blacklisted right now, as a share of blacklisted plus active participants "
        "(the seed warns above 10 %, critical above 25 %).",
        [
            ratio(
                f'sum({sel("zerostate_blacklisted_executors")})',
                f'(sum({sel("zerostate_blacklisted_executors")}) + sum({sel("zerostate_participants_active")}))',
            )
        ],
        "percentunit",
        w=4,
        thresholds=[{"color": "green", "value": None}, {"color": "yellow", "value": 0.1}, {"color": "red", "value": 0.25}],
    )
    d.row("Value and channels")
    d.ts(
        "TVL Trend (24h)",
        "Seed 001 'TVL Trend (24h)': total value locked over the last 24 hours, with the creator and executor balances held in open channels.",
        [
            (f'sum({sel("zerostate_total_value_locked_units")})', "TVL"),
            (f'sum by (party) ({sel("zerostate_payment_channel_balance_units")})', "channel balance {{party}}"),
        ],
        "short",
        time_from="24h",
    )
    d.ts(
        "Channel Lifecycle",
        "Seed 001 'Channel Lifecycle' (opening/active/closed/disputed): channel events per second (opened, settled = closed, disputed) and open channels by state.",
        [
            (f'sum by (event) ({rate("zerostate_payment_channel_events_total")})', "{{event}}/s"),
            (f'sum by (state) ({sel("zerostate_payment_channels")})', "open {{state}}"),
        ],
        "short",
    )
    d.ts(
        "Payment Volume & Throughput",
        "Seed 001 'Payment Volume & Throughput': payments per second by outcome, and value paid per second (sum of successful payment amounts).",
        [
            (f'sum by (outcome) ({rate("zerostate_payments_total")})', "payments {{outcome}}"),
            (f'sum({rate("zerostate_payment_amount_units_sum")})', "value/s"),
        ],
        "short",
    )
    d.ts(
        "Payment Amount Distribution",
        "Seed 001 'Payment Amount Distribution': P50/P90/P99 of successful payment amounts.",
        quantiles("zerostate_payment_amount_units", qs=(0.5, 0.9, 0.99)),
        "short",
    )
    d.row("Reputation")
    d.panel(
        "bargauge",
        "Reputation Score Distribution (Top 10)",
        "Seed 001 'Reputation Score Distribution': the ten executor peers with the highest reputation score (0 to 1).",
        [(f'topk(10, {sel("zerostate_reputation_score")})', "{{peer_id}}")],
        "percentunit",
        w=8,
        instant=True,
        defaults={"min": 0, "max": 1},
    )
    d.panel(
        "bargauge",
        "Task Success Rate by Peer",
        "Seed 001 'Task Success Rate by Peer' (individual executor quality): the ten executors with the lowest share of successful recorded tasks.",
        [(f'bottomk(10, {sel("zerostate_reputation_success_ratio")})', "{{peer_id}}")],
        "percentunit",
        w=8,
        instant=True,
        defaults={"min": 0, "max": 1},
    )
    d.panel(
        "bargauge",
        "Average Task Cost by Peer",
        "Seed 001 'Average Task Cost by Peer' (pricing analytics): mean fuel cost of recorded tasks, the ten most expensive executors.",
        [(f'topk(10, {sel("zerostate_reputation_average_task_cost_units")})', "{{peer_id}}")],
        "short",
        w=8,
        instant=True,
    )
    d.row("Settlement, disputes and trust")
    d.ts(
        "Settlement Activity",
        "Seed 001 'Settlement Activity' (channel finalization rate): settlements per second by outcome.",
        [(f'sum by (outcome) ({rate("zerostate_settlements_total")})', "{{outcome}}")],
        "ops",
        w=8,
    )
    d.ts(
        "Dispute Rate",
        "Seed 001 'Dispute Rate': channel disputes per second by resolution (the seed warns above 0.5/s). 0 while no dispute happened.",
        [
            (
                zero_if_none(f'sum by (resolution) ({rate("zerostate_disputes_total")})'),
                "{{resolution}}",
            )
        ],
        "ops",
        w=8,
    )
    d.ts(
        "Blacklist Events",
        "Seed 001 'Blacklist Events' (added/removed/expired): blacklist changes per second.",
        [(zero_if_none(f'sum by (event) ({rate("zerostate_blacklist_events_total")})'), "{{event}}")],
        "ops",
        w=8,
    )
    d.ts(
        "Transaction Throughput (TPS)",
        "Seed 001 'Transaction Throughput (TPS)': network-wide successful transactions per second (channel payments plus settlements).",
        [
            (
                f'sum({rate("zerostate_payments_total", "outcome=ok")}) + sum({rate("zerostate_settlements_total", "outcome=ok")})',
                "TPS",
            )
        ],
        "ops",
    )
    d.ts(
        "Auctions and Bids",
        "Seed 002 (not in seed 001): task auctions per second by outcome (error = no eligible bid) and bids by status.",
        [
            (f'sum by (outcome) ({rate("zerostate_auctions_total")})', "auctions {{outcome}}"),
            (f'sum by (status) ({rate("zerostate_bids_total")})', "bids {{status}}"),
        ],
        "ops",
    )
    d.ts(
        "Escrows",
        "Seed 002 (not in seed 001): escrows created, released to the executor, and refunded to the creator (by reason) per second.",
        [
            (f'sum({rate("zerostate_escrows_created_total")})', "created"),
            (f'sum({rate("zerostate_escrow_releases_total")})', "released"),
            (zero_if_none(f'sum by (reason) ({rate("zerostate_escrow_refunds_total")})'), "refunded {{reason}}"),
        ],
        "ops",
        w=24,
    )
    return d


def system_health():
    d = zerostate(
        "zs-system-health",
        "ZeroState / System Health",
        "Overall status and alerting (seed 001 dashboard 4): availability, health checks, errors and success per layer, latency, firing alerts.",
    )
    d.row("Status")
    d.stat(
        "Overall System Status",
        "Seed 001 'Overall System Status': availability = share of targets up x the worst readiness check (1 pass, 0.5 warn, 0 fail). "
        "HEALTHY above 95 %, DEGRADED 70-95 %, CRITICAL below 70 % (the seed's status definitions).",
        [
            (
                f'avg(up{{{S_UP}}}) * min({sel("zerostate_health_check_status", "kind=readiness")})',
                "status",
            )
        ],
        "percentunit",
        w=6,
        mappings=STATUS_MAPPINGS,
        thresholds=[{"color": "red", "value": None}, {"color": "yellow", "value": 0.7}, {"color": "green", "value": 0.95}],
    )
    d.stat(
        "Service Uptime",
        "Seed 001 'Service Uptime' (bootnode/edge-node/relay availability): share of successful scrapes of each node over the time range.",
        [(f"avg_over_time(up{{{S_UP}}}[$__range])", "{{instance}}")],
        "percentunit",
        w=6,
        thresholds=RATIO_THRESHOLDS,
    )
    d.stat(
        "Active Alerts",
        "Seed 001 'Active Alerts': alerts firing right now for the selected job (0 when none fires).",
        [(zero_if_none(f'count(ALERTS{{alertstate="firing", {S_UP}}})'), "firing")],
        "short",
        w=6,
        thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}],
    )
    d.stat(
        "Resource Warnings",
        "Seed 001 'Resource Warnings' is a log viewer of ERROR/WARN lines: those are on the Logs Explorer dashboard (zs-logs-explorer). "
        "Here: health checks not passing right now (warn or fail), 0 when all pass.",
        [(zero_if_none(f'count({sel("zerostate_health_check_status")} < 1)'), "checks not passing")],
        "short",
        w=6,
        thresholds=[{"color": "green", "value": None}, {"color": "yellow", "value": 1}],
    )
    d.row("Components")
    d.ts(
        "Error Rate by Component",
        "Seed 001 'Error Rate by Component' (P2P/execution/economic errors): failed operations per second in each layer "
        "(P2P operations, task executions, payments and settlements).",
        [
            (zero_if_none(f'sum({rate("zerostate_p2p_operations_total", "outcome!=ok")})'), "p2p"),
            (zero_if_none(f'sum({rate("zerostate_tasks_executed_total", "outcome!=ok")})'), "execution"),
            (
                zero_if_none(f'sum({rate("zerostate_payments_total", "outcome!=ok")})')
                + " + "
                + zero_if_none(f'sum({rate("zerostate_settlements_total", "outcome!=ok")})'),
                "economic",
            ),
        ],
        "ops",
    )
    d.ts(
        "Component Health Scores",
        "Seed 001 'Component Health Scores' (success rate per layer): share of successful P2P operations, task executions and payments "
        "(the seed's ComponentHealthDegraded is below 80 %).",
        [
            (
                ratio(
                    f'sum({rate("zerostate_p2p_operations_total", "outcome=ok")})',
                    f'sum({rate("zerostate_p2p_operations_total")})',
                ),
                "p2p",
            ),
            (
                ratio(
                    f'sum({rate("zerostate_tasks_executed_total", "outcome=ok")})',
                    f'sum({rate("zerostate_tasks_executed_total")})',
                ),
                "execution",
            ),
            (
                ratio(
                    f'sum({rate("zerostate_payments_total", "outcome=ok")})',
                    f'sum({rate("zerostate_payments_total")})',
                ),
                "economic",
            ),
        ],
        "percentunit",
        defaults={"min": 0, "max": 1},
    )
    d.panel(
        "table",
        "Key Metrics Summary",
        "Seed 001 'Key Metrics Summary': the critical numbers of each layer right now, one row per node.",
        [
            (f'sum by (instance) ({sel("zerostate_p2p_connections", "state=active")})', "active connections"),
            (f'sum by (instance) ({rate("zerostate_tasks_executed_total")})', "tasks/s"),
            (f'sum by (instance) ({sel("zerostate_guilds_active")})', "active guilds"),
            (f'sum by (instance) ({sel("zerostate_payment_channels", "state=active")})', "active channels"),
            (f'sum by (instance) ({sel("zerostate_total_value_locked_units")})', "TVL"),
            (f'sum by (instance) ({sel("zerostate_blacklisted_executors")})', "blacklisted"),
        ],
        "short",
        w=12,
        instant=True,
        fmt="table",
        transformations=[
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True},
                    "renameByName": {
                        "Value #A": "active connections",
                        "Value #B": "tasks/s",
                        "Value #C": "active guilds",
                        "Value #D": "active channels",
                        "Value #E": "TVL",
                        "Value #F": "blacklisted",
                    },
                },
            },
        ],
    )
    d.ts(
        "Alert History (Last Hour)",
        "Seed 001 'Alert History (Last Hour)': firing alerts over the last hour by name and severity (a flat 0 while none fires).",
        [(f'sum by (alertname, severity) (ALERTS{{alertstate="firing", {S_UP}}}) or on() vector(0)', "{{alertname}} {{severity}}")],
        "short",
        time_from="1h",
    )
    d.row("Latency and availability")
    d.ts(
        "Network Latency (p95)",
        "Seed 001 'Network Latency (p95)' (cross-component latency): p95 of P2P operations, peer pings, task execution, payments and HTTP requests "
        "(the seed's HighSystemLatency is above 10 s).",
        [
            (f'histogram_quantile(0.95, sum by (le) ({rate("zerostate_p2p_operation_duration_seconds_bucket")}))', "p2p operation"),
            (f'histogram_quantile(0.95, sum by (le) ({rate("zerostate_p2p_peer_ping_duration_seconds_bucket")}))', "peer ping"),
            (f'histogram_quantile(0.95, sum by (le) ({rate("zerostate_wasm_execution_duration_seconds_bucket")}))', "task execution"),
            (f'histogram_quantile(0.95, sum by (le) ({rate("zerostate_payment_duration_seconds_bucket")}))', "payment"),
            (f'histogram_quantile(0.95, sum by (le) ({rate("zerostate_http_request_duration_seconds_bucket")}))', "http"),
        ],
        "s",
    )
    d.panel(
        "state-timeline",
        "Critical Metrics Heatmap",
        "Seed 001 'Critical Metrics Heatmap' (service availability timeline): each node up or down, and each health check's status, over time.",
        [
            (f"up{{{S_UP}}}", "up {{instance}}"),
            (f'min by (check) ({sel("zerostate_health_check_status")})', "{{check}}"),
        ],
        "short",
        defaults={
            "color": {"mode": "thresholds"},
            "thresholds": {
                "mode": "absolute",
                "steps": [{"color": "red", "value": None}, {"color": "yellow", "value": 0.5}, {"color": "green", "value": 1}],
            },
        },
    )
    d.ts(
        "Telemetry Pipeline",
        "Not a seed panel: the framework's own signals - spans exported and dropped per second, and log events sampled out.",
        [
            (f'sum({rate("zerostate_trace_spans_exported_total")})', "spans exported"),
            (f'sum by (reason) ({rate("zerostate_trace_spans_dropped_total")})', "spans dropped {{reason}}"),
            (f'sum by (level) ({rate("zerostate_log_events_sampled_out_total")})', "logs sampled out {{level}}"),
        ],
        "cps",
        w=24,
    )
    return d


# ---------------------------------------------------------------------------------
# AINS (seed 003 section 8.5): system overview, task management, agent performance,
# chain execution, scheduled tasks


def ains(uid, title, description):
    d = Dashboard(uid, title, description, ["ains"], job="ains-api", build_info="ains_build_info")
    d.standard_variables()
    return d


def ains_system_overview():
    d = ains(
        "zs-ains-system-overview",
        "AINS / System Overview",
        "The AINS API's golden signals (seed 003 section 8.5, dashboard 1): request rate, latency, errors, connections, resources.",
    )
    d.stat(
        "Request Rate",
        "Seed 003 'Request rate (requests/second)': HTTP requests served per second, all routes.",
        [(f'sum({rate("ains_http_requests_total")})', "req/s")],
        "reqps",
    )
    d.stat(
        "Error Rate",
        "Seed 003 'Error rate': share of requests answered 5xx (the seed's HighErrorRate is above 5 %); 0 while none was.",
        [
            ratio(
                zero_if_none(f'sum({rate("ains_http_requests_total", "status=~5..")})'),
                f'sum({rate("ains_http_requests_total")})',
            )
        ],
        "percentunit",
        thresholds=[{"color": "green", "value": None}, {"color": "yellow", "value": 0.01}, {"color": "red", "value": 0.05}],
    )
    d.stat(
        "Active Connections",
        "Seed 003 'Active connections': HTTP requests in flight and database connections in use right now.",
        [
            (f'sum({sel("ains_http_requests_in_progress")})', "requests in flight"),
            (f'sum({sel("ains_db_connections_active")})', "db connections"),
        ],
        "short",
    )
    d.stat(
        "Cache Hit Ratio",
        "Not a seed panel (seed 003 alert LowCacheHitRate, below 70 %): cache hits divided by lookups since start.",
        [(f'avg({sel("ains_cache_hit_ratio")})', "hit ratio")],
        "percentunit",
        thresholds=[{"color": "red", "value": None}, {"color": "yellow", "value": 0.5}, {"color": "green", "value": 0.7}],
    )
    d.ts(
        "Request Rate by Route",
        "Seed 003 'Request rate (requests/second)': requests per second by method, route template and status code.",
        [(f'sum by (method, route, status) ({rate("ains_http_requests_total")})', "{{method}} {{route}} {{status}}")],
        "reqps",
    )
    d.ts(
        "Request Latency (p50/p95/p99)",
        "Seed 003 'Request latency (p50, p95, p99)': time to produce the response head, all routes.",
        quantiles("ains_http_request_duration_seconds"),
        "s",
    )
    d.ts(
        "Errors by Status",
        "Seed 003 'Error rate' (detail): 4xx and 5xx responses per second by route and status; 0 while there were none.",
        [(zero_if_none(f'sum by (route, status) ({rate("ains_http_requests_total", "status=~[45]..")})'), "{{route}} {{status}}")],
        "reqps",
    )
    d.ts(
        "Resource Usage",
        "Seed 003 'CPU/Memory usage': zs-observe exports no process_* metrics (no CPU or memory series exist), so this shows the "
        "resources the service itself bounds: database pool utilization (the seed's DatabaseConnectionPoolExhausted is at 90 %) "
        "and cache entries (right axis).",
        [
            (ratio(f'sum({sel("ains_db_connections_active")})', f'sum({sel("ains_db_connections_max")})'), "db pool utilization"),
            (f'sum({sel("ains_cache_entries")})', "cache entries"),
        ],
        "percentunit",
        defaults={"min": 0},
    )
    d.ts(
        "Database Query Latency (p95)",
        "Not a seed panel: p95 time of one SQLite statement, by operation.",
        quantiles("ains_db_query_duration_seconds", by="operation", qs=(0.95,)),
        "s",
    )
    d.ts(
        "Database Queries",
        "Not a seed panel: SQLite statements per second by operation and outcome.",
        [(f'sum by (operation, outcome) ({rate("ains_db_queries_total")})', "{{operation}} {{outcome}}")],
        "ops",
    )
    return d


def ains_task_management():
    d = ains(
        "zs-ains-task-management",
        "AINS / Task Management",
        "Task flow of the AINS API (seed 003 section 8.5, dashboard 2): creation, completion, queue, duration, failures, retries.",
    )
    d.stat(
        "Task Queue Depth",
        "Seed 003 'Task queue depth': pending tasks not yet assigned to an agent (the seed's HighTaskQueueDepth is above 100).",
        [(f'sum({sel("ains_tasks_in_queue")})', "queued")],
        "short",
        thresholds=[{"color": "green", "value": None}, {"color": "yellow", "value": 50}, {"color": "red", "value": 100}],
    )
    d.stat(
        "Task Failure Rate",
        "Seed 003 'Task failure rate': share of finished tasks that failed.",
        [
            ratio(
                zero_if_none(f'sum({rate("ains_tasks_duration_seconds_count", "status=failed")})'),
                f'sum({rate("ains_tasks_duration_seconds_count")})',
            )
        ],
        "percentunit",
        thresholds=[{"color": "green", "value": None}, {"color": "yellow", "value": 0.05}, {"color": "red", "value": 0.2}],
    )
    d.stat(
        "Retry Rate",
        "Seed 003 'Retry rate': failed tasks put back to pending per second.",
        [(f'sum({rate("ains_task_retries_total")})', "retries/s")],
        "ops",
    )
    d.stat(
        "Task Timeouts",
        "Not a seed panel (seed 003 `ains_task_timeouts_total`): running tasks marked failed per second because they exceeded the task timeout.",
        [(f'sum({rate("ains_task_timeouts_total")})', "timeouts/s")],
        "ops",
    )
    d.ts(
        "Task Creation Rate",
        "Seed 003 'Task creation rate': tasks created per second, by priority (successful creations).",
        [(f'sum by (priority) ({rate("ains_tasks_total", "outcome=ok")})', "{{priority}}")],
        "ops",
        stack=True,
    )
    d.ts(
        "Task Completion Rate",
        "Seed 003 'Task completion rate': tasks finished per second by final status (completed, failed).",
        [(f'sum by (status) ({rate("ains_tasks_duration_seconds_count")})', "{{status}}")],
        "ops",
        stack=True,
    )
    d.ts(
        "Task Duration Distribution",
        "Seed 003 'Task duration distribution': time from creation to completion or failure, p50/p95/p99.",
        quantiles("ains_tasks_duration_seconds"),
        "s",
    )
    d.ts(
        "Task Failure Rate by Type",
        "Seed 003 'Task failure rate by type': task_type is free text, so it is a span field, not a metric label "
        "(monitoring/catalog/ains.toml); this shows failures per second by how the task failed - marked failed through the API, "
        "timed out, or not routable (no active agent).",
        [
            (
                zero_if_none(f'sum({rate("ains_task_status_updates_total", "status=failed, outcome=ok")})'),
                "marked failed",
            ),
            (f'sum({rate("ains_task_timeouts_total")})', "timed out"),
            (zero_if_none(f'sum({rate("ains_task_routing_total", "outcome!=ok")})'), "routing failed"),
        ],
        "ops",
    )
    d.ts(
        "Status Changes",
        "Not a seed panel: status changes requested through the API per second, by target status and outcome.",
        [(f'sum by (status, outcome) ({rate("ains_task_status_updates_total")})', "{{status}} {{outcome}}")],
        "ops",
    )
    d.ts(
        "Retries and Routing",
        "Seed 003 'Retry rate' (detail): retries per second, and routing attempts per second by outcome.",
        [
            (f'sum({rate("ains_task_retries_total")})', "retries"),
            (f'sum by (outcome) ({rate("ains_task_routing_total")})', "routing {{outcome}}"),
        ],
        "ops",
    )
    return d


def ains_agent_performance():
    d = ains(
        "zs-ains-agent-performance",
        "AINS / Agent Performance",
        "The agents that execute AINS tasks (seed 003 section 8.5, dashboard 3): count, trust, load, success, responsiveness.",
    )
    d.stat(
        "Agents Registered",
        "Seed 003 'Agent count (total)': agents registered.",
        [(f'sum({sel("ains_agents_registered")})', "registered")],
        "short",
    )
    d.stat(
        "Agents Active",
        "Seed 003 'Agent count (active)': agents with a recent heartbeat (the seed's NoActiveAgents fires at 0).",
        [(f'sum({sel("ains_agents_active")})', "active")],
        "short",
        thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 1}],
    )
    d.stat(
        "Agent Success Rate",
        "Seed 003 'Agent success rate': share of finished tasks that completed. Failures are not labelled by agent "
        "(only completions are, `ains_agent_tasks_completed_total`), so this is over all agents.",
        [
            ratio(
                f'sum({rate("ains_tasks_duration_seconds_count", "status=completed")})',
                f'sum({rate("ains_tasks_duration_seconds_count")})',
            )
        ],
        "percentunit",
        thresholds=RATIO_THRESHOLDS,
    )
    d.stat(
        "Mean Trust Score",
        "Seed 003 'Agent trust score distribution' (summary): mean trust score of the agents.",
        [(f'avg({sel("ains_agent_trust_score")})', "mean trust")],
        "percentunit",
        thresholds=[{"color": "red", "value": None}, {"color": "yellow", "value": 0.5}, {"color": "green", "value": 0.8}],
    )
    d.panel(
        "bargauge",
        "Agent Trust Score Distribution",
        "Seed 003 'Agent trust score distribution': the trust score (0 to 1) each agent reported in its last heartbeat; the router prefers the highest.",
        [(f'sort_desc(max by (agent_id) ({sel("ains_agent_trust_score")}))', "agent {{agent_id}}")],
        "percentunit",
        instant=True,
        defaults={"min": 0, "max": 1},
    )
    d.ts(
        "Tasks per Agent",
        "Seed 003 'Tasks per agent': tasks completed per second, by the agent they were assigned to.",
        [(f'sum by (agent_id) ({rate("ains_agent_tasks_completed_total")})', "agent {{agent_id}}")],
        "ops",
        stack=True,
    )
    d.ts(
        "Agent Response Time",
        "Seed 003 'Agent response time': no per-agent latency metric exists; the agents' response time shows as the time from a task's "
        "creation to its completion (p50/p95, all agents) and as their heartbeat rate.",
        quantiles("ains_tasks_duration_seconds", extra='status="completed"', qs=(0.5, 0.95)),
        "s",
    )
    d.ts(
        "Heartbeats and Registrations",
        "Not a seed panel: agent heartbeats and registrations per second, by outcome.",
        [
            (f'sum by (outcome) ({rate("ains_agent_heartbeats_total")})', "heartbeats {{outcome}}"),
            (f'sum by (outcome) ({rate("ains_agent_registrations_total")})', "registrations {{outcome}}"),
        ],
        "ops",
    )
    return d


def ains_chain_execution():
    d = ains(
        "zs-ains-chain-execution",
        "AINS / Chain Execution",
        "Chains of tasks run step by step (seed 003 section 8.5, dashboard 4): active chains, completion, duration, step failures, success.",
    )
    d.stat(
        "Active Chains",
        "Seed 003 'Active chains': no gauge exists; chains created minus chains finished since the service started "
        "(both counters reset together on a restart).",
        [
            (
                f'sum({sel("ains_chains_total", "outcome=ok")}) - sum({sel("ains_chain_duration_seconds_count")})',
                "active",
            )
        ],
        "short",
    )
    d.stat(
        "Chain Success Rate",
        "Seed 003 'Chain success rate': share of finished chains that completed.",
        [
            ratio(
                f'sum({rate("ains_chain_duration_seconds_count", "status=completed")})',
                f'sum({rate("ains_chain_duration_seconds_count")})',
            )
        ],
        "percentunit",
        thresholds=RATIO_THRESHOLDS,
    )
    d.stat(
        "Step Failure Rate",
        "Seed 003 'Step failure rate': share of finished chain steps that failed (a failed step fails its chain); 0 while none did.",
        [
            ratio(
                zero_if_none(f'sum({rate("ains_chain_steps_total", "status=failed")})'),
                f'sum({rate("ains_chain_steps_total")})',
            )
        ],
        "percentunit",
        thresholds=[{"color": "green", "value": None}, {"color": "yellow", "value": 0.05}, {"color": "red", "value": 0.2}],
    )
    d.stat(
        "Chains Created",
        "Not a seed panel: chains created per second, by outcome.",
        [(f'sum({rate("ains_chains_total")})', "created/s")],
        "ops",
    )
    d.ts(
        "Chain Completion Rate",
        "Seed 003 'Chain completion rate': chains finished per second by final status, and chains created per second.",
        [
            (f'sum by (status) ({rate("ains_chain_duration_seconds_count")})', "finished {{status}}"),
            (f'sum({rate("ains_chains_total", "outcome=ok")})', "created"),
        ],
        "ops",
    )
    d.ts(
        "Chain Duration",
        "Seed 003 'Chain duration': time from a chain's creation to its completion or failure, p50/p95/p99.",
        quantiles("ains_chain_duration_seconds"),
        "s",
    )
    d.ts(
        "Chain Steps",
        "Seed 003 'Step failure rate' (detail): chain steps finished per second, by status.",
        [(f'sum by (status) ({rate("ains_chain_steps_total")})', "{{status}}")],
        "ops",
        stack=True,
        w=24,
    )
    return d


def ains_scheduled_tasks():
    d = ains(
        "zs-ains-scheduled-tasks",
        "AINS / Scheduled Tasks",
        "Recurring tasks (seed 003 section 8.5, dashboard 5): schedules, runs, missed runs, the next run.",
    )
    d.stat(
        "Active Schedules",
        "Seed 003 'Active schedules': scheduled tasks defined.",
        [(f'sum({sel("ains_scheduled_tasks")})', "schedules")],
        "short",
    )
    d.stat(
        "Run Success Rate",
        "Seed 003 'Run success rate': share of scheduled runs (each creates a task) with outcome ok, over the time range.",
        [
            ratio(
                f'sum({rate("ains_scheduled_tasks_runs_total", "outcome=ok")})',
                f'sum({rate("ains_scheduled_tasks_runs_total")})',
            )
        ],
        "percentunit",
        thresholds=RATIO_THRESHOLDS,
    )
    d.stat(
        "Missed Runs",
        "Seed 003 'Missed runs': no missed-run counter exists; schedules whose last run is over an hour ago (the seed's "
        "ScheduledTaskMissed condition), 0 when every schedule ran within the hour.",
        [(zero_if_none(f'count(time() - {sel("ains_scheduled_tasks_last_run_timestamp_seconds")} > 3600)'), "missed")],
        "short",
        thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}],
    )
    d.stat(
        "Next Run Countdown",
        "Seed 003 'Next run countdown': seconds until the next scheduled task is due (0 when one is overdue or none is defined).",
        [(f'min({sel("ains_scheduled_tasks_next_run_seconds")})', "next run in")],
        "s",
    )
    d.ts(
        "Scheduled Runs",
        "Seed 003 'Run success rate' (detail): scheduled runs per second, by outcome.",
        [(f'sum by (outcome) ({rate("ains_scheduled_tasks_runs_total")})', "{{outcome}}")],
        "ops",
        stack=True,
    )
    d.ts(
        "Time Since Last Run",
        "Seed 003 'Missed runs' (detail): seconds since each schedule's last run; above its interval means a run was missed, "
        "above 3600 s the ScheduledTaskMissed alert condition holds.",
        [(f'time() - max by (schedule_id) ({sel("ains_scheduled_tasks_last_run_timestamp_seconds")})', "schedule {{schedule_id}}")],
        "s",
    )
    d.ts(
        "Next Run Countdown (over time)",
        "Seed 003 'Next run countdown': seconds until the next scheduled task is due, over time (a saw-tooth per interval).",
        [(f'min({sel("ains_scheduled_tasks_next_run_seconds")})', "next run in")],
        "s",
        w=24,
    )
    return d


# ---------------------------------------------------------------------------------
# Logs explorer (seed 004): LogQL over the JSON logs that Alloy ships to Loki.
# Stream labels are only `service` and `level` (monitoring/alloy/config.alloy);
# trace_id is structured metadata / a JSON field, never a stream label.

SVC = 'service=~"$service"'

# Layer filters by the event's `target` (the Rust module path).
LAYERS = [
    ("P2P Network Logs", "P2P layer", "zerostate_node::(p2p|peer).*"),
    ("Execution Logs", "execution layer (WASM, guilds, receipts)", "zerostate_node::(wasm|guilds|receipt|storage).*"),
    ("Payment Logs", "payment layer (channels, payments, settlement, reputation, auctions)", "zerostate_node::economy.*"),
    ("AINS API Logs", "AINS API (tasks, agents, chains, schedules)", "ains_api.*"),
]


def logs_explorer():
    d = Dashboard(
        "zs-logs-explorer",
        "zs-observe / Logs Explorer",
        "Structured JSON logs of every zs-observe service in Loki (seed 004): volume, errors, warnings, the logs of one trace, "
        "and the logs of each layer. Stream labels are service and level only; trace_id is filtered after `| json`.",
        ["logs"],
        kind="loki",
    )
    d.variables.append(datasource_var("loki", "Loki", "loki"))
    d.variables.append(
        {
            "name": "service",
            "label": "Service",
            "type": "query",
            "datasource": {"type": "loki", "uid": "${datasource}"},
            "definition": "label_values(service)",
            "query": {"label": "service", "stream": "", "type": 1, "refId": "LokiVariableQueryEditor-VariableQuery"},
            "refresh": 2,
            "sort": 1,
            "hide": 0,
            "multi": True,
            "includeAll": True,
            # Loki rejects a selector whose every matcher matches the empty string.
            "allValue": ".+",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "regex": "",
            "options": [],
        }
    )
    d.variables.append(
        {
            "name": "level",
            "label": "Level",
            "type": "custom",
            "query": "error,warn,info,debug,trace",
            "multi": True,
            "includeAll": True,
            "allValue": ".+",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "hide": 0,
            "options": [],
        }
    )
    for name, label, help_ in [
        ("trace_id", "Trace ID", "32 hex digits, from a Jaeger trace or a log line"),
        ("search", "Search", "text the log line contains"),
    ]:
        d.variables.append(
            {
                "name": name,
                "label": label,
                "description": help_,
                "type": "textbox",
                "query": "",
                "current": {"selected": False, "text": "", "value": ""},
                "hide": 0,
                "options": [],
            }
        )

    d.row("Volume and errors")
    d.panel(
        "timeseries",
        "Log Volume by Service",
        "Seed 004 'Log Volume by Service': log lines per interval, per service.",
        [(f'sum by (service) (count_over_time({{{SVC}, level=~"$level"}}[$__interval]))', "{{service}}")],
        "short",
        custom={"drawStyle": "bars", "fillOpacity": 80, "stacking": {"mode": "normal", "group": "A"}},
        w=8,
    )
    d.panel(
        "timeseries",
        "Log Volume by Level",
        "Log lines per interval, per level (seed 004 'Log Level Distribution' over time).",
        [(f'sum by (level) (count_over_time({{{SVC}, level=~"$level"}}[$__interval]))', "{{level}}")],
        "short",
        custom={"drawStyle": "bars", "fillOpacity": 80, "stacking": {"mode": "normal", "group": "A"}},
        w=8,
    )
    d.panel(
        "timeseries",
        "Error Rate",
        "Seed 004 'Error Rate': error lines per second, per service.",
        [(f'sum by (service) (rate({{{SVC}, level="error"}}[$__interval]))', "{{service}}")],
        "cps",
        w=8,
    )
    d.panel(
        "piechart",
        "Log Level Distribution",
        "Seed 004 'Log Level Distribution': share of each level over the time range.",
        [(f"sum by (level) (count_over_time({{{SVC}}}[$__range]))", "{{level}}")],
        "short",
        w=8,
        instant=True,
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "pieType": "donut",
            "legend": {"displayMode": "table", "placement": "right", "values": ["percent"]},
            "tooltip": {"mode": "single"},
        },
    )
    d.panel(
        "bargauge",
        "Top Services by Log Volume",
        "Seed 004 'Top Services by Log Volume': the ten services that logged the most lines over the time range.",
        [('topk(10, sum by (service) (count_over_time({service=~".+"}[$__range])))', "{{service}}")],
        "short",
        w=8,
        instant=True,
    )
    d.panel(
        "table",
        "Error Hotspots",
        "Seed 004 'Error Hotspots' (service + operation error counts): error lines over the time range by service and target (the Rust module that logged them).",
        [(f'sum by (service, target) (count_over_time({{{SVC}, level="error"}} | json | __error__="" [$__range]))', "")],
        "short",
        w=8,
        instant=True,
    )
    d.row("Log streams")
    d.panel(
        "logs",
        "Recent Logs",
        "Seed 004 'Recent Logs': the latest lines of the selected services and levels, containing $search.",
        [(f'{{{SVC}, level=~"$level"}} |= "$search"', "")],
        "none",
        w=24,
        h=10,
    )
    d.panel(
        "logs",
        "Logs by Trace ID",
        "Seed 004 'Logs by Trace ID': every line of the trace typed in the Trace ID box, from all services. trace_id is not a stream "
        "label (that would create a stream per trace); it is filtered after `| json`. The TraceID derived field opens the trace in Jaeger.",
        [(f'{{{SVC}}} | json | trace_id="$trace_id"', "")],
        "none",
        w=24,
        h=10,
    )
    d.panel(
        "logs",
        "Error Logs",
        "Seed 004 'Error Logs': error-level lines.",
        [(f'{{{SVC}, level="error"}}', "")],
        "none",
        w=12,
        h=10,
    )
    d.panel(
        "logs",
        "Warning Logs",
        "Seed 004 'Warning Logs': warn-level lines.",
        [(f'{{{SVC}, level="warn"}}', "")],
        "none",
        w=12,
        h=10,
    )
    d.row("Layers")
    for title, what, target in LAYERS:
        seed = "Seed 004 '" + title + "'" if title != "AINS API Logs" else "Not a seed panel"
        d.panel(
            "logs",
            title,
            f"{seed}: lines of the {what}, selected by the event's target (module path) `{target}`.",
            [(f'{{{SVC}, level=~"$level"}} | json | target=~"{target}"', "")],
            "none",
            w=12,
            h=10,
        )
    return d


ALL = [
    network_overview,
    execution_performance,
    economic_activity,
    system_health,
    logs_explorer,
    ains_system_overview,
    ains_task_management,
    ains_agent_performance,
    ains_chain_execution,
    ains_scheduled_tasks,
]


def main():
    """Writes every dashboard; with `--check`, writes nothing and fails when a file
    differs from what would be written (the tests run this)."""
    check = "--check" in sys.argv[1:]
    OUT.mkdir(parents=True, exist_ok=True)
    stale = []
    for build in ALL:
        d = build()
        path = OUT / f"{d.uid}.json"
        text = json.dumps(d.json(), indent=2, ensure_ascii=False) + "\n"
        name = path.relative_to(OUT.parent.parent.parent)
        if check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(name))
            continue
        path.write_text(text)
        panels = [p for p in d.panels if p["type"] != "row"]
        print(f"{name}: {len(panels)} panels")
    if stale:
        print("out of date (run python3 monitoring/grafana/generate.py):", *stale, sep="\n  ")
        sys.exit(1)


if __name__ == "__main__":
    main()
