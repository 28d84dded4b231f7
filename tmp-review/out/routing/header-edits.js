const NO_OPERATIONS = Object.freeze({
    remove: [],
    setNames: [],
    setValues: [],
    addNames: [],
    addValues: [],
    empty: true,
});
/** The edits of a rule that has none; shared, immutable. */
export const NO_HEADER_EDITS = Object.freeze({
    request: NO_OPERATIONS,
    response: NO_OPERATIONS,
});
// RFC 9110 §5.1 field-name = token.
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// RFC 9110 §5.5: CR, LF and NUL are never valid in a field value; Node's setHeader would throw
// ERR_INVALID_CHAR on every request instead of the config being rejected once.
const BAD_VALUE = /[\r\n\0]/;
/**
 * Headers that frame the message or belong to one connection (RFC 9110 §7.6.1, RFC 9112 §6,
 * RFC 9113 §8.2.2). Letting a route rewrite them would desynchronise the hop's framing
 * (request smuggling) or break the proxy's own connection handling, so such edits are refused.
 */
const PROTECTED = new Set([
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
]);
/**
 * Compiles a rule's HeaderEdits. Names are lower-cased. Problems are appended to `errors`, each
 * prefixed by `where` (the field path of the edits): a name that is not an HTTP token, a value
 * with CR/LF/NUL, a hop-by-hop or framing header, removing `host`, or one `set` name given twice
 * in different case. Returns NO_HEADER_EDITS when there is nothing to do.
 */
export function compileHeaderEdits(edits, where, errors) {
    if (edits === undefined)
        return NO_HEADER_EDITS;
    const request = compileOperations(edits.request, `${where}.request`, errors);
    const response = compileOperations(edits.response, `${where}.response`, errors);
    return request.empty && response.empty ? NO_HEADER_EDITS : { request, response };
}
function compileOperations(ops, where, errors) {
    if (ops === undefined)
        return NO_OPERATIONS;
    const remove = ops.remove.map((name, i) => {
        const lower = checkName(name, `${where}.remove[${i}]`, errors);
        if (lower === "host")
            errors.push(`${where}.remove[${i}]: cannot remove host`);
        return lower;
    });
    const setNames = [];
    const setValues = [];
    for (const [name, value] of Object.entries(ops.set)) {
        const lower = checkName(name, `${where}.set.${name}`, errors);
        checkValue(value, `${where}.set.${name}`, errors);
        if (setNames.includes(lower))
            errors.push(`${where}.set.${name}: header set twice (names are case-insensitive)`);
        setNames.push(lower);
        setValues.push(value);
    }
    const addNames = [];
    const addValues = [];
    for (const [name, value] of Object.entries(ops.add)) {
        addNames.push(checkName(name, `${where}.add.${name}`, errors));
        checkValue(value, `${where}.add.${name}`, errors);
        addValues.push(value);
    }
    const empty = remove.length === 0 && setNames.length === 0 && addNames.length === 0;
    return empty ? NO_OPERATIONS : { remove, setNames, setValues, addNames, addValues, empty };
}
function checkName(name, where, errors) {
    const lower = name.toLowerCase();
    if (!TOKEN.test(name))
        errors.push(`${where}: not a valid header name`);
    else if (PROTECTED.has(lower))
        errors.push(`${where}: ${lower} is a hop-by-hop or framing header`);
    return lower;
}
function checkValue(value, where, errors) {
    if (BAD_VALUE.test(value))
        errors.push(`${where}: value must not contain CR, LF or NUL`);
}
/**
 * Applies one direction's edits to `headers` in place: remove, then set, then add (so `set` and
 * `add` of one name give both values, and `remove` never undoes a set). An added value joins the
 * existing ones as an array, which Node sends as separate field lines — correct for every header,
 * including set-cookie, which must never be comma-joined (RFC 6265 §3). Existing arrays are
 * copied, never mutated: they may be shared with the incoming message.
 */
export function applyHeaderOperations(headers, ops) {
    if (ops.empty)
        return;
    const { remove, setNames, setValues, addNames, addValues } = ops;
    for (let i = 0; i < remove.length; i++)
        delete headers[remove[i]];
    for (let i = 0; i < setNames.length; i++)
        headers[setNames[i]] = setValues[i];
    for (let i = 0; i < addNames.length; i++) {
        const name = addNames[i];
        const value = addValues[i];
        const existing = headers[name];
        if (existing === undefined)
            headers[name] = value;
        else if (typeof existing === "string")
            headers[name] = [existing, value];
        else
            headers[name] = [...existing, value];
    }
}
/** Applies a rule's request edits to the headers of the request sent to the backend. */
export function applyRequestEdits(headers, edits) {
    applyHeaderOperations(headers, edits.request);
}
/** Applies a rule's response edits to the headers of the response sent to the caller. */
export function applyResponseEdits(headers, edits) {
    applyHeaderOperations(headers, edits.response);
}
