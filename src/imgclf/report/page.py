"""The skeleton every imgclf HTML page shares: escaping, the head (offline: a Content-Security-Policy that loads
nothing from anywhere) and the style sheet."""

from __future__ import annotations

from html import escape


def _e(s) -> str:
    return escape(str(s), quote=True)


def _head(title: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<meta name="generator" content="imgclf">
<title>{_e(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<main>"""


_CSS = """
:root{--fg:#111827;--mut:#6b7280;--bd:#e5e7eb;--bg:#f9fafb;--blue:#2563eb;--red:#dc2626;--green:#16a34a}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:1180px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:20px;margin:0 0 8px;padding-top:8px}
h3{font-size:15px;margin:0 0 6px}
h3.sect{margin:18px 0 8px}
code{font:13px ui-monospace,"DejaVu Sans Mono",monospace;background:#eef2f7;padding:1px 4px;border-radius:4px;word-break:break-all}
.sub{color:var(--mut);margin:0 0 16px}
.note{color:var(--mut);margin:0 0 12px}
.count{font-weight:normal;color:var(--mut);font-size:14px;margin-left:6px}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(125px,1fr));gap:10px}
.tile{background:#fff;border:1px solid var(--bd);border-radius:10px;padding:10px 12px}
.tile .k{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:var(--mut)}
.tile .v{font-size:22px;font-weight:600;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.tile.wide{grid-column:span 2}
.tile .v.txt{font-size:16px;line-height:1.3;padding:4px 0 3px}
.tile.wide .v.txt{white-space:normal;overflow-wrap:anywhere}
.tile .s{font-size:12px;color:var(--mut);min-height:18px}
nav{position:sticky;top:0;z-index:5;background:var(--bg);border-bottom:1px solid var(--bd);margin:18px 0;padding:8px 0}
nav a{margin-right:18px;color:var(--blue);text-decoration:none;font-weight:500}
section{background:#fff;border:1px solid var(--bd);border-radius:12px;padding:18px 22px;margin:0 0 20px;scroll-margin-top:50px}
.figs{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
.figs figure{flex:1 1 420px;max-width:560px}
.figs .cm{width:fit-content;max-width:100%}.figs .cm img{width:auto;max-width:100%}
.figs.many{display:block}
.figs.many figure{max-width:none;overflow-x:auto;margin-bottom:16px}
.figs.many .cm,.figs.many .cm img{width:auto;max-width:none}
figure{margin:0;max-width:100%}
figure img{max-width:100%;height:auto;display:block}
.cm{position:relative;display:inline-block;max-width:100%}
.cm img{display:block;max-width:100%;height:auto}
.cm a.cell{position:absolute;border-radius:2px}
.cm a.cell:hover,.cm a.cell:focus{outline:2px solid #f59e0b;outline-offset:-2px;background:rgba(245,158,11,.15)}
.groups{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:10px}
.group{border:1px solid var(--bd);border-radius:8px;padding:8px 10px;scroll-margin-top:50px}
.group.wrong{border-left:4px solid var(--red)}
.group.right{border-left:4px solid var(--green)}
.group:target,.miss:target{box-shadow:0 0 0 3px #f59e0b}
.group h3{font-weight:normal;font-size:14px}
.strip{display:flex;flex-wrap:wrap;gap:6px}
.ph{position:relative;display:inline-block;text-decoration:none;color:inherit}
.ph img{height:64px;width:auto;border-radius:4px;display:block}
.ph .name{display:inline-block;font-size:11px;max-width:120px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;padding:2px 4px;background:#f3f4f6;border-radius:4px}
.ph .c{position:absolute;right:2px;bottom:2px;font-size:10px;background:rgba(17,24,39,.75);color:#fff;padding:0 3px;border-radius:3px}
.ph .name+.c{position:static;margin-left:2px}
.more{font-size:12px;color:var(--mut);align-self:center}
table{border-collapse:collapse;font-size:14px}
th,td{padding:5px 10px;border-bottom:1px solid var(--bd);text-align:left;vertical-align:middle}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
td.path{font:12px ui-monospace,"DejaVu Sans Mono",monospace;word-break:break-all}
table.sortable th{padding:0}
table.sortable th button{font:inherit;font-weight:600;border:0;background:none;padding:6px 10px;cursor:pointer;width:100%;text-align:left}
table.sortable th[aria-sort=ascending] button::after{content:" ▲"}
table.sortable th[aria-sort=descending] button::after{content:" ▼"}
tr.low td:first-child{border-left:4px solid var(--red);font-weight:600}
tr.none td{color:var(--mut)}
tr.total td{font-weight:600}
.mini{display:inline-block;width:60px;height:6px;background:#eef2f7;border-radius:3px;margin-left:8px;vertical-align:middle}
.mini span{display:block;height:100%;background:var(--blue);border-radius:3px}
.misses{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:12px}
.miss{display:flex;gap:12px;border:1px solid var(--bd);border-radius:8px;padding:10px;scroll-margin-top:50px}
.miss .thumb{flex:0 0 96px}
.miss .thumb img{width:96px;height:auto;border-radius:4px;display:block}
.miss .thumb img.heat{margin-top:4px}
.noimg{width:96px;height:72px;background:#f3f4f6;color:var(--mut);font-size:11px;display:flex;align-items:center;justify-content:center;border-radius:4px}
.miss .info{flex:1;min-width:0}
.miss .path{font:11px ui-monospace,"DejaVu Sans Mono",monospace;color:var(--mut);word-break:break-all;margin-bottom:2px}
.verdict{font-size:14px;margin-bottom:6px}
.tl{color:var(--green)}.pl{color:var(--red)}
.bars{display:grid;gap:3px}
.br{display:grid;grid-template-columns:minmax(60px,110px) 1fr 52px;gap:6px;align-items:center;font-size:12px}
.bl{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.bt{height:10px;background:#eef2f7;border-radius:5px;overflow:hidden}
.bt span{display:block;height:100%;background:#9ca3af}
.br.t .bt span{background:var(--green)}.br.p .bt span{background:var(--red)}
.br.t .bl{color:var(--green);font-weight:600}.br.p .bl{color:var(--red);font-weight:600}
.bv{text-align:right;font-variant-numeric:tabular-nums}
.key{display:inline-block;padding:0 6px;border-radius:4px;color:#fff;font-size:12px}
.key.t{background:var(--green)}.key.p{background:var(--red)}
.cal{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
.cal>div{flex:1;min-width:300px}
.cal figure{flex:0 0 auto}
.cal figure img{width:460px}
ul.warnings{margin:0;padding-left:20px}
footer{color:var(--mut);font-size:13px;margin-top:8px}
@media print{nav{position:static}section{break-inside:avoid-page}}
.finding{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start;border:1px solid var(--bd);border-radius:8px;padding:10px;margin:0 0 10px;background:#fff}
.finding .pics{display:flex;flex-wrap:wrap;gap:6px;flex:0 1 auto;max-width:100%}
.finding figure{margin:0;text-align:center;font-size:11px;color:var(--mut)}
.finding figure img{height:96px;width:auto;border-radius:4px;display:block}
.finding .what{min-width:0;flex:1 1 220px}
.finding .path{font:12px ui-monospace,monospace;word-break:break-all}
.finding .act{color:var(--green)}
.finding.tag-leak{border-color:#f59e0b}.finding.tag-conflict{border-color:var(--red)}
.tag{font-size:11px;border-radius:4px;padding:1px 5px;margin-left:6px;background:#fef3c7}
.tiles+section{margin-top:20px}
.scroll{overflow-x:auto;max-width:100%}
.scroll td,.scroll th{white-space:nowrap}
@media (max-width:600px){.groups{grid-template-columns:minmax(0,1fr)}main{padding:16px 12px 32px}section{padding:14px 12px}}
"""
