/*! sluice.js: subscribe to a Sluice gateway from a browser. No dependencies.
 *
 *   const sub = Sluice.subscribe({
 *     url: "https://sse.example.com",           // gateway base URL ("" = this origin)
 *     channels: ["scan-progress:<tenant>:42"],
 *     events: ["scan.progress", "scan.done"],   // event types to deliver
 *     getToken: async () => (await fetch("/api/sse-token")).text(),
 *     ticket: true,                             // optional: exchange the token for a one-use ticket
 *     onEvent(type, data, id) { ... },
 *     onReset(reason) { refetchState(); },
 *     onError(condition, text) { ... },
 *   });
 *   sub.close();
 *
 * See docs/client.md for every option and what happens on each stream-error.
 */
(function (root, factory) {
  "use strict";
  var api = factory(root);
  if (typeof module === "object" && module.exports) {
    module.exports = api;
  } else {
    root.Sluice = api;
  }
})(typeof self !== "undefined" ? self : this, function (root) {
  "use strict";

  var RESERVED = ["stream-open", "stream-reset", "stream-error"];

  function noop() {}

  function joinURL(base, path) {
    var origin = root.location ? root.location.href : undefined;
    if (!base) return new URL(path, origin);
    return new URL(String(base).replace(/\/+$/, "") + path, origin);
  }

  function parse(text) {
    try {
      return JSON.parse(text);
    } catch (e) {
      return text;
    }
  }

  // fetchTicket exchanges a token for a stream ticket (POST /tickets, SPEC §2):
  // the long-lived token travels in a header, only the 30-second one-use
  // ticket ends up in the stream URL.
  function fetchTicket(opts) {
    return Promise.resolve(opts.getToken ? opts.getToken() : "").then(function (token) {
      var headers = {};
      if (token) headers.Authorization = "Bearer " + token;
      return root.fetch(joinURL(opts.url, "/tickets").toString(), {
        method: "POST",
        headers: headers,
        credentials: opts.withCredentials ? "include" : "same-origin",
      });
    }).then(function (res) {
      if (!res.ok) return problemOf(res).then(function (p) { throw p; });
      return res.json().then(function (body) { return body.ticket; });
    });
  }

  // problemOf turns a refused response into {code, text, status}.
  function problemOf(res) {
    return res.json().then(function (p) {
      return { status: res.status, code: p.code || "http-" + res.status, text: p.detail || p.title || "" };
    }, function () {
      return { status: res.status, code: "http-" + res.status, text: res.statusText || "" };
    });
  }

  function subscribe(opts) {
    if (!opts) throw new TypeError("Sluice.subscribe: options required");
    var path = opts.path || "/events";
    var channels = opts.channels || [];
    var types = (opts.events || []).filter(function (t) { return RESERVED.indexOf(t) < 0; });
    var onEvent = opts.onEvent || noop;
    var onOpen = opts.onOpen || noop;
    var onReset = opts.onReset || noop;
    var onError = opts.onError || noop;
    var maxBackoff = opts.maxBackoff || 30000;
    var useTicket = !!opts.ticket;
    var getTicket = typeof opts.ticket === "function" ? opts.ticket : function () { return fetchTicket(opts); };

    var es = null;        // the current EventSource
    var lastId = opts.lastEventId || "";
    var closed = false;
    var timer = null;
    var failures = 0;     // consecutive attempts that did not open
    var unauthorized = 0; // consecutive 401s
    var generation = 0;   // bumps on every (re)open; stale callbacks check it

    // credential returns the query parameter carrying the credential.
    function credential() {
      if (useTicket) {
        return Promise.resolve(getTicket()).then(function (t) { return ["ticket", t]; });
      }
      if (!opts.getToken) return Promise.resolve(null);
      return Promise.resolve(opts.getToken()).then(function (t) { return t ? ["access_token", t] : null; });
    }

    function streamURL(cred, withCursor) {
      var u = joinURL(opts.url, path);
      channels.forEach(function (c) { u.searchParams.append("channel", c); });
      if (cred) u.searchParams.set(cred[0], cred[1]);
      if (withCursor && lastId) u.searchParams.set("lastEventId", lastId);
      return u.toString();
    }

    function stop() {
      generation++;
      if (timer) { clearTimeout(timer); timer = null; }
      if (es) { es.close(); es = null; }
    }

    function backoff() {
      var d = Math.min(maxBackoff, 1000 * Math.pow(2, Math.min(failures, 10)));
      return d + Math.random() * d / 4;
    }

    // reopen opens a fresh EventSource after delay ms, with a fresh
    // credential and the last id in the query (a new EventSource has no
    // Last-Event-ID of its own: SPEC §5 ?lastEventId=).
    function reopen(delay) {
      stop();
      if (closed) return;
      var gen = generation;
      timer = setTimeout(function () {
        timer = null;
        credential().then(function (cred) {
          if (closed || gen !== generation) return;
          open(streamURL(cred, true));
        }, function (err) {
          if (closed || gen !== generation) return;
          failed(err);
        });
      }, delay || 0);
    }

    // failed decides what follows a refused request (err a problem from
    // problemOf) or a network failure (any other error).
    function failed(err) {
      failures++;
      if (!err || !err.status) {
        onError("connect-failed", (err && err.message) || String(err));
        return reopen(backoff());
      }
      if (err.status === 401 && ++unauthorized < 2) return reopen(0); // one fresh token
      if (err.status === 429 || err.status >= 500) {
        onError(err.code, err.text);
        return reopen(backoff());
      }
      fatal(err.code, err.text); // 400, 401 again, 403, 404: retrying cannot help
    }

    function fatal(condition, text) {
      closed = true;
      stop();
      onError(condition, text);
    }

    function open(url) {
      var gen = ++generation;
      var source = new root.EventSource(url, { withCredentials: !!opts.withCredentials });
      es = source;

      function current() { return !closed && gen === generation; }

      function remember(e) {
        if (e.lastEventId) lastId = e.lastEventId;
      }

      source.addEventListener("stream-open", function (e) {
        if (!current()) return;
        remember(e);
        failures = 0;
        unauthorized = 0;
        var d = parse(e.data) || {};
        onOpen({ channels: d.channels || [], cursor: e.lastEventId });
      });
      source.addEventListener("stream-reset", function (e) {
        if (!current()) return;
        var d = parse(e.data) || {};
        onReset(d.reason || "");
      });
      source.addEventListener("stream-error", function (e) {
        if (!current()) return;
        var d = parse(e.data) || {};
        var cond = d.condition || "";
        onError(cond, d.text || "");
        if (closed) return; // onError may have called close()
        switch (cond) {
          case "access-revoked":
            closed = true;
            stop();
            break;
          case "token-expired":
            // A fresh connection with a fresh token, at once.
            failures = 0;
            reopen(0);
            break;
          default:
            // shutting-down, slow-consumer: the server sent a retry hint and
            // EventSource reconnects by itself with Last-Event-ID. A ticket
            // is good once only, so then a new one must be fetched instead.
            if (useTicket) {
              reopen(cond === "shutting-down" ? 1000 + Math.random() * 9000 : backoff());
            }
        }
      });
      function deliver(e) {
        if (!current()) return;
        remember(e);
        onEvent(e.type, parse(e.data), e.lastEventId);
      }
      source.addEventListener("message", deliver);
      types.forEach(function (t) { source.addEventListener(t, deliver); });

      source.addEventListener("error", function () {
        if (!current()) return;
        if (source.readyState !== 2) {
          // The connection dropped. EventSource reconnects by itself,
          // sending Last-Event-ID; a ticket is good once only, so with
          // tickets a new EventSource takes over with a new one.
          if (useTicket) {
            failures++;
            reopen(backoff());
          }
          return;
        }
        // Refused: a non-200 answer or no event stream. Find out why.
        diagnose();
      });
    }

    // diagnose repeats the request with fetch to read the problem the
    // server answered, since EventSource does not expose it.
    function diagnose() {
      stop();
      var gen = generation;
      var ctl = typeof AbortController === "function" ? new AbortController() : null;
      credential().then(function (cred) {
        return root.fetch(streamURL(cred, false), {
          headers: { Accept: "text/event-stream" },
          credentials: opts.withCredentials ? "include" : "same-origin",
          signal: ctl ? ctl.signal : undefined,
        });
      }).then(function (res) {
        if (res.ok) {
          if (ctl) ctl.abort();
          return null;
        }
        return problemOf(res);
      }).then(function (p) {
        if (closed || gen !== generation) return;
        if (!p) { // it works now
          failures++;
          return reopen(backoff());
        }
        failed(p);
      }, function (err) {
        if (closed || gen !== generation) return;
        failed(err);
      });
    }

    var initial = Promise.resolve().then(credential);
    initial.then(function (cred) {
      if (closed) return;
      open(streamURL(cred, true));
    }, function (err) {
      if (!closed) failed(err);
    });

    return {
      // close ends the subscription for good.
      close: function () {
        closed = true;
        stop();
      },
      // lastEventId is the cursor a reconnection resumes from.
      get lastEventId() { return lastId; },
    };
  }

  return { subscribe: subscribe, fetchTicket: fetchTicket, version: "1" };
});
