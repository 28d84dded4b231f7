/**
 * Counters and gauges for everything that is not a request series: plain numbers in cells, one
 * cell per label set, rendered at scrape time. A cell is created once per label set (look it up
 * when a target is built and keep it; `labels()` itself does a Map lookup, and joins strings when
 * there are two labels or more) and then costs one addition per update.
 */
import { checkLabelNames, checkMetricName, renderLabelPairs, writeHeader, writeSample, } from "./exposition.js";
/** A monotonic count. `inc` ignores non-positive and NaN amounts (a counter never goes down). */
export class CounterCell {
    /** The current total; read by the scrape. */
    value = 0;
    /** Adds `n` (default 1) when n > 0. */
    inc(n = 1) {
        if (n > 0)
            this.value += n;
    }
}
/** A value that goes up and down, or is set (0/1 flags, timestamps, current counts). */
export class GaugeCell {
    /** The current value; read by the scrape. */
    value = 0;
    /** Replaces the value. */
    set(v) {
        this.value = v;
    }
    /** Adds `n` (default 1). */
    inc(n = 1) {
        this.value += n;
    }
    /** Subtracts `n` (default 1). */
    dec(n = 1) {
        this.value -= n;
    }
}
/**
 * One metric family: a name, HELP, TYPE and cells keyed by label values `V` (a tuple of string
 * types, so a label with a fixed vocabulary can be typed as a union). A family without labels
 * (V = []) has its one cell created at once, so it is exported as 0 from the start.
 */
export class CellFamily {
    name;
    help;
    type;
    labelNames;
    make;
    names;
    cells = new Map();
    constructor(name, help, type, labelNames, make) {
        this.name = name;
        this.help = help;
        this.type = type;
        this.labelNames = labelNames;
        this.make = make;
        checkMetricName(name);
        checkLabelNames(labelNames);
        this.names = [name];
        if (labelNames.length === 0)
            this.labels(...[]);
    }
    /** The cell for these label values, created on first use; keep it when the label set is fixed. */
    labels(...values) {
        const key = values.length === 1 ? values[0] : values.join("\u0001");
        let entry = this.cells.get(key);
        if (entry === undefined) {
            entry = { labels: renderLabelPairs(this.labelNames, values), cell: this.make() };
            this.cells.set(key, entry);
        }
        return entry.cell;
    }
    /**
     * Drops the series for these label values (a cluster that left the snapshot), so the scrape stops
     * exporting it. A cell still held by someone keeps counting, unseen. Returns whether it existed.
     */
    remove(...values) {
        if (this.labelNames.length === 0)
            return false;
        return this.cells.delete(values.length === 1 ? values[0] : values.join("\u0001"));
    }
    render(out) {
        writeHeader(out, this.name, this.help, this.type);
        for (const entry of this.cells.values())
            writeSample(out, this.name, entry.labels, entry.cell.value);
    }
    seriesCount() {
        return this.cells.size;
    }
}
/** Makes a counter family. Name and label names are checked (a bad one throws: a programming error). */
export function counterFamily(name, help, labelNames) {
    return new CellFamily(name, help, "counter", labelNames, () => new CounterCell());
}
/** Makes a gauge family. */
export function gaugeFamily(name, help, labelNames) {
    return new CellFamily(name, help, "gauge", labelNames, () => new GaugeCell());
}
/**
 * An unlabelled gauge whose value is read at scrape time; no sample is written while `read`
 * returns undefined (a config age before any config, a cert expiry before any cert — exporting 0
 * there would read as "fresh" or "expired in 1970").
 */
export function callbackGauge(name, help, read) {
    checkMetricName(name);
    return {
        names: [name],
        render(out) {
            writeHeader(out, name, help, "gauge");
            const v = read();
            if (v !== undefined)
                writeSample(out, name, "", v);
        },
        seriesCount() {
            return read() === undefined ? 0 : 1;
        },
    };
}
