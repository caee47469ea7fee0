"""The look shared by the HTML pages the package writes (the replay report, the plan report)."""

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f2f2f2; }
td.l, th.l { text-align: left; }
tr.b td { font-weight: bold; }
.problems { border: 3px solid #c62828; background: #ffebee; padding: 0.5em 1em; margin: 1em 0; }
.problems h2 { color: #c62828; margin-top: 0.2em; }
.note { color: #666; font-style: italic; }
img { max-width: 100%; border: 1px solid #eee; }
"""
