// Charts for benchmark results, rendered to SVG with Vega-Lite (no browser, no canvas needed).
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

export interface LineChart {
  title: string;
  x: { field: string; title: string; log?: boolean };
  y: { field: string; title: string; log?: boolean };
  series: string;
  values: Array<Record<string, unknown>>;
}

/** Writes a line chart (one line per series value) as SVG, atomically. */
export async function writeLineChart(path: string, chart: LineChart): Promise<void> {
  const spec: TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: chart.title,
    width: 520,
    height: 340,
    data: { values: chart.values },
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: chart.x.field, type: 'quantitative', title: chart.x.title, scale: chart.x.log ? { type: 'log' } : {} },
      y: { field: chart.y.field, type: 'quantitative', title: chart.y.title, scale: chart.y.log ? { type: 'log' } : {} },
      color: { field: chart.series, type: 'nominal', title: chart.series },
      strokeDash: { field: 'pass', type: 'nominal', title: 'pass', legend: { symbolType: 'stroke', symbolStrokeColor: '#555' } },
    },
  };
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, svg);
  renameSync(tmp, path);
}
