#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) zimbra_geo contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: write_report
short_description: Write a run's report files on the controller
version_added: 0.1.0
description:
  - Writes the same report under several names (a stamped one and a C(latest) one), one file
    per format (C(json), C(html), ...), in a directory on the controller, which it creates.
  - Runs in the controller's own process (an action plugin), so with no module run and no
    file transfer. Each file is written atomically (a temporary file renamed over it), so a reader never sees
    half a report; a file that already holds exactly that content is left alone.
  - The report is the run's output, not a change to the platform; in check mode nothing is
    written unless the task turns check mode off (C(check_mode) set to false).
author:
  - zimbra_geo maintainers (@mailops)
options:
  dir:
    description:
      - The report directory on the controller. C(~) is expanded; a relative path is taken from
        the directory C(ansible-playbook) runs in. RV(dir) and RV(files) are absolute.
    type: path
    required: true
  names:
    description:
      - The file names, without extension, the report is written under.
    type: list
    elements: str
    required: true
  content:
    description:
      - Each file extension mapped to the text of that format.
    type: dict
    required: true
  mode:
    description:
      - The permissions of the files.
    type: str
    default: "0644"
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  platform:
    platforms: all
extends_documentation_fragment:
  - action_common_attributes
  - action_common_attributes.flow
"""

EXAMPLES = r"""
- name: Write the report as JSON and as an HTML page, stamped and as the latest
  mailops.zimbra_geo.write_report:
    dir: "{{ report_dir }}"
    names:
      - "replication-verify-{{ stamp }}"
      - replication-verify-latest
    content:
      json: "{{ report | to_nice_json }}\n"
      html: "{{ lookup('ansible.builtin.template', 'report.html.j2', convert_data=false) }}"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
dir:
  description: The report directory.
  returned: always
  type: str
  sample: /srv/reports
files:
  description: The files written (or, in check mode, that would be written).
  returned: always
  type: list
  elements: str
  sample: ["/srv/reports/replication-verify-latest.json", "/srv/reports/replication-verify-latest.html"]
"""
