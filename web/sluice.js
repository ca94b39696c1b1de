/*! sluice.js: subscribe to a Sluice gateway from a browser. No dependencies.
 *
 *   const sub = Sluice.subscribe({
 *     url: "https://sse.example.com",           // gateway base URL ("" = this origin)
 *     channels: ["scan-progress:<tenant>:42"],
 *     events: ["scan.progress", "scan.done"],   // event types to deliver ("*": every type)
 *     getToken: async () => (await fetch("/api/sse-token")).text(),
 *     ticket: true,                             // optional: exchange the token for a one-use ticket
 *     onEvent(type, data, id) { ... },
 *     onReset(reason, id) { refetchState(); },
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

  // fetchTicket exchanges a token for a stream ticket (POST /tickets, protocol.md §2):
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

  // networkText describes a request that got no answer at all. A browser
  // reports a CORS refusal exactly like an unreachable server, so when the
  // gateway is on another origin the text says what to check.
  function networkText(opts, err) {
    var text = (err && err.message) || String(err);
    var here = root.location && root.location.origin;
    var there = "";
    try {
      there = joinURL(opts.url, "/").origin;
    } catch (e) { /* no URL to compare */ }
    if (here && there && here !== there && here !== "null") {
      text += " (no answer from " + there + ": if it is up, it may refuse this page's origin (CORS); " +
        "add " + here + " to the gateway's SLUICE_ALLOW_ORIGINS)";
    }
    return text;
  }

  // FetchSource reads an event stream with fetch, so that every event type
  // is delivered (EventSource delivers only the types listened for by
  // name). It looks like an EventSource to subscribe: addEventListener,
  // close, readyState; listeners of "*" get every event. It never
  // reconnects by itself: a refusal or a failed request sets refusal (a
  // promise of the problem or error), a stream that ends after it opened
  // sets dropped; both then fire "error".
  function FetchSource(url, withCredentials) {
    var self = this;
    this.readyState = 0;
    this.lastEventId = "";
    this.refusal = null;
    this.dropped = false;
    this.listeners = {};
    this.ctl = typeof AbortController === "function" ? new AbortController() : null;
    root.fetch(url, {
      headers: { Accept: "text/event-stream" },
      credentials: withCredentials ? "include" : "same-origin",
      cache: "no-store",
      signal: this.ctl ? this.ctl.signal : undefined,
    }).then(function (res) {
      if (self.readyState === 2) return null;
      var type = res.headers.get("Content-Type") || "";
      if (!res.ok || type.indexOf("text/event-stream") !== 0) {
        self.ctl = null; // close() must not abort the reading of the problem
        self.refusal = problemOf(res);
        self.readyState = 2;
        self.emit({ type: "error" });
        return null;
      }
      self.readyState = 1;
      self.emit({ type: "open" });
      return self.read(res.body.getReader());
    }).then(null, function (err) {
      if (self.readyState === 2) return;
      if (self.readyState === 0) {
        self.refusal = Promise.resolve(err);
      } else {
        self.dropped = true;
      }
      self.readyState = 2;
      self.emit({ type: "error" });
    });
  }

  FetchSource.prototype.addEventListener = function (type, fn) {
    (this.listeners[type] = this.listeners[type] || []).push(fn);
  };

  FetchSource.prototype.close = function () {
    this.readyState = 2;
    if (this.ctl) this.ctl.abort();
  };

  FetchSource.prototype.emit = function (e) {
    var fns = (this.listeners[e.type] || []).slice();
    if (e.type !== "open" && e.type !== "error") fns = fns.concat(this.listeners["*"] || []);
    for (var i = 0; i < fns.length; i++) {
      try {
        fns[i](e);
      } catch (err) {
        setTimeout(function () { throw err; }); // reported, not fatal to the stream
      }
    }
  };

  // read parses the event stream (WHATWG HTML, server-sent events) and
  // dispatches each event; it rejects when the stream ends.
  FetchSource.prototype.read = function (reader) {
    var self = this;
    var decoder = new TextDecoder();
    var buf = "";
    var data = [];
    var type = "";
    function line(l) {
      if (l === "") {
        if (data.length) self.emit({ type: type || "message", data: data.join("\n"), lastEventId: self.lastEventId });
        data = [];
        type = "";
        return;
      }
      if (l.charAt(0) === ":") return;
      var i = l.indexOf(":");
      var field = i < 0 ? l : l.slice(0, i);
      var value = i < 0 ? "" : l.slice(i + 1);
      if (value.charAt(0) === " ") value = value.slice(1);
      if (field === "data") data.push(value);
      else if (field === "event") type = value;
      else if (field === "id" && value.indexOf("\0") < 0) self.lastEventId = value;
    }
    function pump() {
      return reader.read().then(function (r) {
        if (self.readyState === 2) {
          reader.cancel();
          return;
        }
        buf += r.done ? decoder.decode() : decoder.decode(r.value, { stream: true });
        for (;;) {
          var i = buf.search(/[\r\n]/);
          if (i < 0) break;
          var n = 1;
          if (buf.charAt(i) === "\r") {
            if (i === buf.length - 1 && !r.done) break; // perhaps the first half of CRLF
            if (buf.charAt(i + 1) === "\n") n = 2;
          }
          var l = buf.slice(0, i);
          buf = buf.slice(i + n);
          line(l);
          if (self.readyState === 2) return;
        }
        if (r.done) throw new Error("the stream ended"); // an unterminated event is dropped
        return pump();
      });
    }
    return pump();
  };

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
    var types = (opts.events || []).filter(function (t) { return RESERVED.indexOf(t) < 0 && t !== "*"; });
    var every = (opts.events || []).indexOf("*") >= 0; // every type: read with fetch
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
    // Last-Event-ID of its own: protocol.md §5 ?lastEventId=).
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
        onError("connect-failed", networkText(opts, err));
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
      var source = every ? new FetchSource(url, !!opts.withCredentials)
        : new root.EventSource(url, { withCredentials: !!opts.withCredentials });
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
        remember(e); // a mid-stream reset carries the id the stream goes on from
        var d = parse(e.data) || {};
        onReset(d.reason || "", e.lastEventId || "");
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
      if (every) {
        source.addEventListener("*", function (e) {
          if (RESERVED.indexOf(e.type) < 0) deliver(e);
        });
      } else {
        source.addEventListener("message", deliver);
        types.forEach(function (t) { source.addEventListener(t, deliver); });
      }

      source.addEventListener("error", function () {
        if (!current()) return;
        if (source.refusal) {
          // FetchSource: the answer was a refusal, or there was none.
          var refusal = source.refusal;
          stop();
          var g = generation;
          refusal.then(function (p) {
            if (!closed && g === generation) failed(p);
          });
          return;
        }
        if (source.dropped) {
          failures++;
          reopen(backoff());
          return;
        }
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
