"""Self-update with automatic switch-back (issue 12, docs/decisions/0010-self-update.md).

- :mod:`edge.update.package`: the package file (a wheel, or a bundle of wheels) checked before use;
- :mod:`edge.update.releases`: the releases side by side under ``/opt/linli``, ``current`` and ``previous``;
- :mod:`edge.update.service`: the agent's unit restarted through systemd and judged over its control socket;
- :mod:`edge.update.updater`: the steps, as root, written down so a power cut cannot leave them half done;
- :mod:`edge.update.handoff`: the files through which the agent asks and the updater answers;
- :mod:`edge.update.remote`: ``cmd/update`` on the agent's side, and answering it after a restart.
"""
