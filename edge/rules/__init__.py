"""Local rules and alarms (docs/design.md, Rules and alarms): the engine the agent and ``linli replay`` share."""

from edge.rules.config import SEVERITIES, RuleConfig
from edge.rules.engine import AWAY_ALARM, RuleEngine, RuleError
from edge.rules.window import parse_window

__all__ = ["AWAY_ALARM", "SEVERITIES", "RuleConfig", "RuleEngine", "RuleError", "parse_window"]
