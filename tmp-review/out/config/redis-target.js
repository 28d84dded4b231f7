/**
 * `--redis` / `TRELLIS_REDIS`: where the global rate-limit counters live. Three forms
 * (INTERFACES.md "Sidecar settings"):
 *   redis://[user:pass@]host[:port][/db]      (rediss:// for TLS) — one server
 *   redis-sentinel://[user:pass@]h1:p,h2:p/master-name            — Sentinel, names the master set
 *   redis-cluster://[user:pass@]h1:p,h2:p                         — Redis Cluster seed nodes
 * Credentials, when given, are for the Redis data nodes (not the Sentinels).
 */
import { parseHostPort } from "@trellis/proto/address";
import { SettingProblem } from "./values.js";
const MULTI = /^(redis-sentinel|redis-cluster):\/\/(?:([^@/]*)@)?([^/@]+)(?:\/(.*))?$/;
const EXAMPLES = "redis://host:port, redis-sentinel://h1:p,h2:p/master-name or redis-cluster://h1:p,h2:p";
function credentials(userinfo) {
    if (userinfo === undefined || userinfo.length === 0)
        return {};
    const colon = userinfo.indexOf(":");
    const user = decodeURIComponent(colon < 0 ? userinfo : userinfo.slice(0, colon));
    const pass = colon < 0 ? undefined : decodeURIComponent(userinfo.slice(colon + 1));
    return {
        ...(user.length > 0 ? { username: user } : {}),
        ...(pass !== undefined && pass.length > 0 ? { password: pass } : {}),
    };
}
function redact(text) {
    return text.replace(/^([a-z-]+:\/\/)([^@/]*)@/, (_m, scheme, userinfo) => {
        const colon = userinfo.indexOf(":");
        return colon < 0 ? `${scheme}${userinfo}@` : `${scheme}${userinfo.slice(0, colon)}:***@`;
    });
}
function hosts(list) {
    const out = [];
    for (const item of list.split(",")) {
        let hp;
        try {
            hp = parseHostPort(item.trim());
        }
        catch {
            throw new SettingProblem(`has ${JSON.stringify(item)} where host:port was expected`);
        }
        if (hp.port === 0)
            throw new SettingProblem(`needs a port 1-65535 in ${JSON.stringify(item)}`);
        out.push(hp);
    }
    return out;
}
/** Parses a `--redis` value; throws SettingProblem naming the accepted forms. */
export function parseRedisTarget(text) {
    const t = text.trim();
    const display = redact(t);
    const multi = MULTI.exec(t);
    if (multi !== null) {
        const [, scheme, userinfo, hostList = "", rest] = multi;
        const creds = credentials(userinfo);
        if (scheme === "redis-sentinel") {
            const masterName = rest === undefined ? "" : decodeURIComponent(rest);
            if (masterName.length === 0 || masterName.includes("/"))
                throw new SettingProblem(`must name the master set: redis-sentinel://h1:p,h2:p/master-name, got ${display}`);
            return { mode: "sentinel", display, sentinels: hosts(hostList), masterName, ...creds };
        }
        if (rest !== undefined && rest.length > 0)
            throw new SettingProblem(`takes no path (Redis Cluster has no databases), got ${display}`);
        return { mode: "cluster", display, nodes: hosts(hostList), ...creds };
    }
    let url;
    try {
        url = new URL(t);
    }
    catch {
        throw new SettingProblem(`must be ${EXAMPLES}, got ${JSON.stringify(display)}`);
    }
    if ((url.protocol !== "redis:" && url.protocol !== "rediss:") || url.hostname.length === 0)
        throw new SettingProblem(`must be ${EXAMPLES}, got ${JSON.stringify(display)}`);
    if (!/^\/?\d*$/.test(url.pathname))
        throw new SettingProblem(`may only have a database number as its path (redis://host:port/0), got ${display}`);
    const creds = credentials(url.username.length > 0 || url.password.length > 0 ? `${url.username}:${url.password}` : undefined);
    return { mode: "standalone", display, url: t, tls: url.protocol === "rediss:", ...creds };
}
