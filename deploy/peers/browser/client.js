#!/usr/bin/env node
// Headless Chromium as a native client in a Janus VideoRoom (publish or
// subscribe), for Tandem's cascade tests. See README.md beside this file.
//
// stdout: one JSON object per line (events, a stats line every --interval,
// a final {"event":"summary"}); stderr: human-readable log.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const http = require('http');
const {spawnSync} = require('child_process');

const HERE = __dirname;

const USAGE = `usage: node client.js publish|subscribe [options]

common:
  --janus URL            Janus HTTP API (default http://127.0.0.1:8088/janus)
  --room N               VideoRoom id (default 4711)
  --create               create the room if absent (admin_key supersecret)
  --room-videocodec L    videocodec list for --create (default h264,vp8)
  --admin-key K          admin_key for --create (default supersecret)
  --turn URL             ICE server (repeatable), e.g. turn:10.99.0.1:3478?transport=udp
  --turn-user U --turn-pass P   credentials for the --turn servers
  --relay                iceTransportPolicy "relay"
  --duration S           run for S seconds after start (default 20; 0 = until SIGTERM)
  --interval S           stats line every S seconds (default 1)
  --loopback             add --allow-loopback-in-peer-connection
  --chromium PATH        browser binary (default /usr/bin/chromium)
  --chrome-arg ARG       extra Chromium flag (repeatable)
  --wait-janus S         wait up to S seconds for Janus' HTTP API (default 20)
  --cpu-warmup S         steady-state CPU in the summary counts from S s after media is up (default 3)
  --verbose              page console and janus.js debug to stderr
  --quiet                no per-interval stats lines, only events and the summary

publish:
  --display NAME         display name (default chromium-<pid>)
  --videocodec C         codec asked for in the publish request (default h264; "" = Janus' choice)
  --bitrate BPS          publisher bitrate cap sent with configure
  --simulcast            send 3 simulcast layers (rid h/m/l)
  --screen               also publish a (fake) screen share as "<display>-screen", its video
                         described as "screen" (Tandem's convention for screen shares);
                         with --no-audio --no-video only the screen share is published
  --screen-color C       the screen share is a canvas of CSS colour C (e.g. blue), not getDisplayMedia
  --screen-size WxH      size of the --screen-color canvas (default 1280x720)
  --no-audio / --no-video
  --wav FILE             fake microphone from a WAV file (generated with --tone if absent)
  --tone HZ              sine tone: generates <cache>/tone-HZ.wav unless --wav names the file
  --y4m FILE             fake camera from a Y4M file (generated with --color if absent)
  --color C              ffmpeg colour name: generates <cache>/color-C-WxH.y4m unless --y4m names the file
  --size WxH             camera size asked for / generated (default 640x360)
  --fps N                frame rate asked for / generated (default 15)
  --media-dir DIR        cache for generated media (default $TMPDIR/tandem-browser-media)
  --subscribe            also subscribe, like a real client, to the other publishers
                         (--match/--count/--substream and the --expect-* checks apply;
                         the browser's own feeds are never subscribed to)

subscribe (and publish --subscribe):
  --match REGEX          subscribe to publishers whose display name matches (default: any)
  --count N              how many matching publishers to wait for and subscribe to (default 1)
  --wait-publishers S    give up after S seconds (default 30)
  --substream 0|1|2      simulcast substream to request (0 = lowest)
  --temporal 0|1|2       simulcast temporal layer to request
  --expect-color NAME    exit 3 unless every feed's dominant colour was NAME (last 3 samples)
  --expect-tone HZ       exit 3 unless every feed's audio peak was within 5% of HZ (last 3 samples)
  --probe-hz LIST        also report [level dB, prominence dB] at these frequencies, e.g. 440,880
                         (tonesDb); the --expect-*tone frequencies are always probed
  --tone-threshold-db D  a probed tone counts as heard when its level >= D dB (default -70;
                         a -18 dBFS sine shows about -32, silence/other tones below -100) ...
  --tone-prominence-db P ... and it stands >= P dB above its neighbourhood (default 20)
  --expect-frames        exit 3 unless every feed's framesDecoded rose and frameWidth > 0
  --expect-not-tone HZ   exit 3 if any feed's audio had HZ heard (threshold and prominence) in
                         any sample, even under a louder tone (a publisher's own tone back)
`;

function parseArgs(argv) {
  const o = {mode: argv[0], turn: [], chromeArgs: []};
  const flags = new Set(['create', 'relay', 'loopback', 'verbose', 'quiet', 'simulcast', 'screen',
    'no-audio', 'no-video', 'expect-frames', 'subscribe', 'help']);
  for (let i = 1; i < argv.length; i++) {
    let a = argv[i];
    if (!a.startsWith('--')) throw new Error('unexpected argument ' + a);
    a = a.slice(2);
    let val;
    const eq = a.indexOf('=');
    if (eq >= 0) { val = a.slice(eq + 1); a = a.slice(0, eq); }
    if (flags.has(a)) { o[a] = val === undefined ? true : val !== 'false'; continue; }
    if (val === undefined) {
      if (i + 1 >= argv.length) throw new Error('--' + a + ' needs a value');
      val = argv[++i];
    }
    if (a === 'turn') o.turn.push(val);
    else if (a === 'chrome-arg') o.chromeArgs.push(val);
    else o[a] = val;
  }
  return o;
}

const num = (v, d) => (v === undefined || v === '' ? d : Number(v));
const log = (...a) => process.stderr.write('[client ' + (OPT ? OPT.mode : '') + '] ' + a.join(' ') + '\n');
const emit = o => process.stdout.write(JSON.stringify(o) + '\n');
let OPT = null;

// ---- fake media files -------------------------------------------------------
function ffmpeg(args) {
  const r = spawnSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', ...args], {stdio: ['ignore', 'inherit', 'inherit']});
  if (r.error) throw new Error('ffmpeg: ' + r.error.message + ' (apt-get install ffmpeg)');
  if (r.status !== 0) throw new Error('ffmpeg exited ' + r.status);
}

function mediaDir() {
  const d = OPT['media-dir'] || path.join(os.tmpdir(), 'tandem-browser-media');
  fs.mkdirSync(d, {recursive: true});
  return d;
}

// Writes to a temp name first so that two clients generating the same file do
// not read a half-written one.
function generate(file, args) {
  if (fs.existsSync(file)) return file;
  const tmp = file + '.' + process.pid + path.extname(file);
  ffmpeg([...args, tmp]);
  fs.renameSync(tmp, file);
  log('generated', file);
  return file;
}

function wavFile() {
  if (!OPT.wav && !OPT.tone) return null;
  const hz = num(OPT.tone, 440);
  const file = OPT.wav ? path.resolve(OPT.wav) : path.join(mediaDir(), `tone-${hz}.wav`);
  // 30 s of a continuous sine (ffmpeg's amplitude 1/8, -18 dBFS), 48 kHz
  // mono s16. Chromium loops the file, with a click at each loop point.
  return generate(file, ['-f', 'lavfi', '-i', `sine=frequency=${hz}:sample_rate=48000:duration=30`,
    '-ac', '1', '-c:a', 'pcm_s16le']);
}

function y4mFile() {
  if (!OPT.y4m && !OPT.color) return null;
  const color = OPT.color || 'red';
  const [w, h] = (OPT.size || '640x360').split('x').map(Number);
  const fps = num(OPT.fps, 15);
  const file = OPT.y4m ? path.resolve(OPT.y4m) : path.join(mediaDir(), `color-${color}-${w}x${h}.y4m`);
  // A plain colour with a small white square sliding along the bottom edge
  // (so "moving" can be told apart from a frozen picture), 4 s, looped by
  // Chromium. The square covers < 2% of the picture.
  const bw = Math.max(8, Math.round(w / 16));
  return generate(file, ['-f', 'lavfi', '-i', `color=c=${color}:s=${w}x${h}:r=${fps}:d=4`,
    '-f', 'lavfi', '-i', `color=c=white:s=${bw}x${bw}:r=${fps}:d=4`,
    '-filter_complex', `[0][1]overlay=x='mod(t*${w}/4\\,${w - bw})':y=${h - bw - 4}:shortest=1,format=yuv420p`,
    '-f', 'yuv4mpegpipe']);
}

// ---- static server for the page ------------------------------------------------
const JS_DIRS = {
  '/janus.js': [process.env.JANUS_JS, '/usr/share/javascript/janus-gateway/janus.js'],
  '/adapter.js': [process.env.ADAPTER_JS, '/usr/share/javascript/webrtc-adapter/adapter.js'],
};
function startServer() {
  for (const [p, c] of Object.entries(JS_DIRS)) {
    const f = c.find(x => x && fs.existsSync(x));
    if (!f) throw new Error(p + ' not found (apt-get install libjs-janus-gateway libjs-webrtc-adapter)');
    JS_DIRS[p] = f;
  }
  const files = Object.assign({'/': path.join(HERE, 'client.html'), '/client.html': path.join(HERE, 'client.html')}, JS_DIRS);
  const srv = http.createServer((req, res) => {
    const f = files[req.url.split('?')[0]];
    if (!f) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, {'content-type': f.endsWith('.html') ? 'text/html; charset=utf-8' : 'text/javascript', 'cache-control': 'no-store'});
    fs.createReadStream(f).pipe(res);
  });
  return new Promise((resolve, reject) => {
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => resolve(srv));
  });
}

function waitJanus(url, seconds) {
  const deadline = Date.now() + seconds * 1000;
  return new Promise((resolve, reject) => {
    const once = () => {
      const req = http.get(url.replace(/\/$/, '') + '/info', res => {
        res.resume();
        if (res.statusCode === 200) resolve(); else retry('HTTP ' + res.statusCode);
      });
      req.on('error', e => retry(e.message));
      req.setTimeout(2000, () => req.destroy(new Error('timeout')));
    };
    const retry = why => {
      if (Date.now() > deadline) reject(new Error('Janus not reachable at ' + url + ': ' + why));
      else setTimeout(once, 250);
    };
    once();
  });
}

// ---- CPU of the browser's process tree, from /proc ------------------------------
const CLK = 100; // USER_HZ on Linux
function procTree(root) {
  const kids = {};
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = fs.readFileSync('/proc/' + d + '/stat', 'utf8');
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      (kids[f[1]] = kids[f[1]] || []).push({pid: d, utime: +f[11], stime: +f[12]});
    } catch (_) { /* gone */ }
  }
  let ticks = 0, n = 0, rss = 0;
  const own = (() => { try { const s = fs.readFileSync('/proc/' + root + '/stat', 'utf8'); const f = s.slice(s.lastIndexOf(')') + 2).split(' '); return +f[11] + +f[12]; } catch (_) { return 0; } })();
  ticks += own; n += 1;
  const stack = [String(root)];
  const pids = [String(root)];
  while (stack.length) {
    for (const k of kids[stack.pop()] || []) { ticks += k.utime + k.stime; n++; stack.push(k.pid); pids.push(k.pid); }
  }
  // PSS (shared pages split between the processes sharing them), not RSS,
  // which counts Chromium's shared pages once per process
  let pss = 0;
  for (const p of pids) {
    try { const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync('/proc/' + p + '/status', 'utf8')); if (m) rss += +m[1]; } catch (_) {}
    try { const m = /^Pss:\s+(\d+)/m.exec(fs.readFileSync('/proc/' + p + '/smaps_rollup', 'utf8')); if (m) pss += +m[1]; } catch (_) {}
  }
  return {cpuSeconds: ticks / CLK, processes: n, rssMiB: Math.round(rss / 1024), pssMiB: Math.round(pss / 1024)};
}

// ---- summary / expectations ---------------------------------------------------------
const heard = (t, opt) => !!t && t[0] != null && t[0] >= num(opt['tone-threshold-db'], -70) &&
  t[1] != null && t[1] >= num(opt['tone-prominence-db'], 20);

function summarise(samples, opt, marks) {
  const s = {event: 'summary', mode: opt.mode, samples: samples.length, marks};
  const last = samples[samples.length - 1] || {};
  if (opt.mode === 'publish') {
    s.publisherId = last.publisherId;
    s.outbound = last.pub && last.pub.outbound;
    if (last.screen) { s.screenId = last.screenId; s.screenOutbound = last.screen.outbound; }
    s.pair = last.pub && last.pub.pair;
    if (!opt.subscribe) return s;
  }
  const byFeed = {};
  for (const x of samples) for (const f of x.feeds || []) {
    const k = String(f.feed);
    const b = byFeed[k] = byFeed[k] || {feed: f.feed, display: f.display, video: [], audio: []};
    if (f.video[0]) b.video.push(f.video[0]);
    if (f.audio[0]) b.audio.push(f.audio[0]);
  }
  const mode = arr => { const c = {}; let best = null; for (const x of arr) { if (x == null) continue; c[x] = (c[x] || 0) + 1; if (best === null || c[x] > c[best]) best = x; } return best; };
  const median = arr => { const a = arr.filter(x => x != null).sort((p, q) => p - q); return a.length ? a[a.length >> 1] : null; };
  s.feeds = Object.values(byFeed).map(b => {
    const v = b.video, a = b.audio, lv = v[v.length - 1] || {}, la = a[a.length - 1] || {};
    const tail = arr => arr.slice(-3);
    return {
      feed: b.feed, display: b.display,
      video: v.length ? {
        codec: lv.codec, framesDecoded: lv.framesDecoded, firstFramesDecoded: v[0].framesDecoded,
        frameWidth: lv.frameWidth, frameHeight: lv.frameHeight, framesPerSecond: lv.framesPerSecond,
        packetsLost: lv.packetsLost, firstFrameMs: lv.firstFrameMs,
        dominant: mode(tail(v).map(x => x.picture && x.picture.dominant)),
        brightness: median(tail(v).map(x => x.picture && x.picture.brightness)),
        motion: median(tail(v).map(x => x.picture && x.picture.motion)),
      } : null,
      audio: a.length ? {
        codec: la.codec, totalAudioEnergy: la.totalAudioEnergy, totalSamplesReceived: la.totalSamplesReceived,
        packetsLost: la.packetsLost, peakHz: median(tail(a).map(x => x.peakHz)), peakDb: median(tail(a).map(x => x.peakDb)),
        // per probed frequency: [level, prominence] of the sample where it was loudest
        tonesDbMax: a.reduce((m, x) => { for (const [f, d] of Object.entries(x.tonesDb || {}))
          if (d[0] != null && (m[f] == null || d[0] > m[f][0])) m[f] = d; return m; }, {}),
        // per probed frequency: in how many samples it was heard (threshold and prominence)
        tonesHeard: a.reduce((m, x) => { for (const [f, d] of Object.entries(x.tonesDb || {}))
          m[f] = (m[f] || 0) + (heard(d, opt) ? 1 : 0); return m; }, {}),
      } : null,
    };
  });
  const fails = [];
  if (!s.feeds.length && (opt['expect-frames'] || opt['expect-color'] || opt['expect-tone'])) fails.push('no feed received');
  for (const f of s.feeds) {
    const name = f.display + '(' + f.feed + ')';
    if (opt['expect-frames'] && (!f.video || !(f.video.framesDecoded > f.video.firstFramesDecoded) || !(f.video.frameWidth > 0)))
      fails.push(name + ': video not decoding ' + JSON.stringify(f.video && {framesDecoded: f.video.framesDecoded, frameWidth: f.video.frameWidth}));
    if (opt['expect-color'] && (!f.video || f.video.dominant !== opt['expect-color']))
      fails.push(name + ': dominant colour ' + (f.video && f.video.dominant) + ', expected ' + opt['expect-color']);
    if (opt['expect-tone']) {
      const want = Number(opt['expect-tone']);
      if (!f.audio || f.audio.peakHz == null || Math.abs(f.audio.peakHz - want) > want * 0.05)
        fails.push(name + ': audio peak ' + (f.audio && f.audio.peakHz) + ' Hz, expected ' + want);
    }
  }
  if (opt['expect-not-tone']) {
    const bad = Number(opt['expect-not-tone']), seen = new Set();
    for (const x of samples) for (const f of x.feeds || []) for (const a of f.audio) {
      const t = a.tonesDb && a.tonesDb[bad];
      if (heard(t, opt) && !seen.has(f.feed)) {
        seen.add(f.feed);   // the first time per feed; tonesHeard counts them all
        fails.push(f.display + '(' + f.feed + '): heard ' + bad + ' Hz at ' + t[0] + ' dB, ' + t[1] + ' dB above its neighbourhood (first at t=' + x.t + ' s), must not');
      }
    }
  }
  if (opt['expect-frames'] || opt['expect-color'] || opt['expect-tone'] || opt['expect-not-tone']) {
    s.ok = fails.length === 0; s.failures = [...new Set(fails)];
  }
  return s;
}

// ---- main ---------------------------------------------------------------------------
async function main() {
  OPT = parseArgs(process.argv.slice(2));
  if (OPT.help || !['publish', 'subscribe'].includes(OPT.mode)) {
    process.stderr.write(USAGE);
    process.exit(OPT.help ? 0 : 64);
  }
  const puppeteer = require('puppeteer-core');
  const janusUrl = OPT.janus || 'http://127.0.0.1:8088/janus';
  const duration = num(OPT.duration, 20);
  const interval = num(OPT.interval, 1);
  const [w, h] = (OPT.size || '640x360').split('x').map(Number);

  const iceServers = OPT.turn.map(u => Object.assign({urls: u},
    OPT['turn-user'] !== undefined ? {username: OPT['turn-user'], credential: OPT['turn-pass'] || ''} : {}));
  const cfg = {
    mode: OPT.mode, janus: janusUrl, room: num(OPT.room, 4711), create: !!OPT.create,
    createBody: Object.assign({videocodec: OPT['room-videocodec'] || 'h264,vp8'}, OPT['admin-key'] ? {admin_key: OPT['admin-key']} : {}),
    iceServers, relay: !!OPT.relay, verbose: !!OPT.verbose,
    // publish
    display: OPT.display || 'chromium-' + process.pid,
    videocodec: OPT.videocodec === undefined ? 'h264' : OPT.videocodec,
    bitrate: OPT.bitrate ? Number(OPT.bitrate) : undefined,
    simulcast: !!OPT.simulcast, screen: !!OPT.screen, subscribe: !!OPT.subscribe,
    screenColor: OPT['screen-color'],
    screenWidth: Number((OPT['screen-size'] || '1280x720').split('x')[0]),
    screenHeight: Number((OPT['screen-size'] || '1280x720').split('x')[1]),
    probeHz: [...new Set([OPT['probe-hz'], OPT['expect-tone'], OPT['expect-not-tone']].filter(Boolean)
      .join(',').split(',').map(Number).filter(x => x > 0))],
    audio: !OPT['no-audio'], video: !OPT['no-video'], width: w, height: h, fps: num(OPT.fps, 15),
    // subscribe
    match: OPT.match, count: num(OPT.count, 1), waitPublishersMs: num(OPT['wait-publishers'], 30) * 1000,
    substream: OPT.substream === undefined ? undefined : Number(OPT.substream),
    temporal: OPT.temporal === undefined ? undefined : Number(OPT.temporal),
  };

  const args = ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
    // WebAudio analysis of the received audio without a user gesture
    '--autoplay-policy=no-user-gesture-required',
    // real host addresses in ICE candidates, not mDNS names (Janus ignores .local)
    '--disable-features=WebRtcHideLocalIpsWithMdns',
    '--no-first-run', '--disable-component-update', '--disable-sync', '--disable-default-apps'];
  if (OPT.loopback) args.push('--allow-loopback-in-peer-connection');
  if (OPT.mode === 'publish') {
    const wav = wavFile(), y4m = y4mFile();
    if (wav) args.push('--use-file-for-fake-audio-capture=' + wav);
    if (y4m) args.push('--use-file-for-fake-video-capture=' + y4m);
    cfg.media = {wav, y4m};
  }
  args.push(...OPT.chromeArgs);

  await waitJanus(janusUrl, num(OPT['wait-janus'], 20));
  const srv = await startServer();
  const pageUrl = `http://127.0.0.1:${srv.address().port}/client.html`;

  const tLaunch = Date.now();
  const browser = await puppeteer.launch({
    executablePath: OPT.chromium || process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true, args,
    // puppeteer's default --mute-audio only mutes the speakers, the analysers still hear
    handleSIGINT: false, handleSIGTERM: false, handleSIGHUP: false,
  });
  const bpid = browser.process() && browser.process().pid;
  let closing = false, page = null, tPage = null, cpuMark = null;
  // page-relative ms (since navigation start) of the first: media up per handle, decoded frame per feed
  const marks = {};
  const samples = [];
  let exitCode = 0;

  const shutdown = async (why) => {
    if (closing) return;
    closing = true;
    log('stopping (' + why + ')');
    const cpu = bpid ? procTree(bpid) : null;
    const sum = summarise(samples, OPT, marks);
    sum.browser = cpu && Object.assign(cpu, {wallSeconds: (Date.now() - tLaunch) / 1000,
      cpuPercent: Math.round(100 * cpu.cpuSeconds / ((Date.now() - tLaunch) / 1000))});
    if (cpu && cpuMark) {
      const secs = (Date.now() - cpuMark.at) / 1000;
      sum.browser.steadySeconds = +secs.toFixed(1);
      sum.browser.steadyCpuPercent = Math.round(100 * (cpu.cpuSeconds - cpuMark.cpuSeconds) / secs);
    }
    sum.launchMs = tPage && tPage - tLaunch;
    emit(sum);
    if (sum.ok === false) { log('FAILED:', sum.failures.join('; ')); exitCode = exitCode || 3; }
    try { if (page) await Promise.race([page.evaluate('window.tandem && window.tandem.stop()'), new Promise(r => setTimeout(r, 4000))]); } catch (_) {}
    try { await Promise.race([browser.close(), new Promise(r => setTimeout(r, 5000))]); } catch (_) {}
    try { if (bpid) process.kill(bpid, 'SIGKILL'); } catch (_) {}
    srv.close();
    process.exit(exitCode);
  };
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => { exitCode = exitCode || 0; shutdown(sig); });

  page = await browser.newPage();
  page.on('console', m => { if (OPT.verbose) log('console:', m.text().slice(0, 500)); });
  page.on('pageerror', e => log('pageerror:', e.message));
  tPage = Date.now();
  await page.goto(pageUrl);
  log(`page ${pageUrl}, browser pid ${bpid}, ${OPT.mode} room ${cfg.room}${cfg.relay ? ' relay' : ''}`);
  // start() resolves once joined/subscribed; it keeps running in the page
  const started = page.evaluate(c => window.tandem.start(c).then(() => null, e => String(e && e.message || e)), cfg);
  started.then(err => { if (err) log('start failed:', err); });

  const t0 = Date.now();
  const firstFrame = {};
  let upAt = null;
  for (;;) {
    await new Promise(r => setTimeout(r, interval * 1000));
    if (closing) return;
    let st;
    try { st = await page.evaluate('window.tandem.collect()'); } catch (e) { log('collect failed:', e.message); exitCode = 2; break; }
    for (const e of st.events) {
      if (e.event === 'webrtc' && e.up && marks['webrtcUpMs.' + e.handle] === undefined) marks['webrtcUpMs.' + e.handle] = e.ms;
      if (e.event === 'first-frame' && marks['firstFrameMs.' + e.display] === undefined) marks['firstFrameMs.' + e.display] = e.ms;
      emit(Object.assign({t: +((Date.now() - t0) / 1000).toFixed(1)}, e));
    }
    delete st.events;
    st.t = +((Date.now() - t0) / 1000).toFixed(1);
    samples.push(st);
    for (const f of st.feeds || []) for (const v of f.video) if (v.framesDecoded > 0 && !firstFrame[v.mid]) {
      firstFrame[v.mid] = true;
      log(`first decoded frame of ${f.display} (mid ${v.mid}) seen by getStats ${Date.now() - tPage} ms after page start; ${v.firstFrameMs} ms by requestVideoFrameCallback`);
    }
    // steady-state CPU: from --cpu-warmup seconds after the media came up to the end
    if (!cpuMark && bpid && Object.values(st.webrtc || {}).some(Boolean)) {
      if (!upAt) upAt = Date.now();
      if (Date.now() - upAt >= num(OPT['cpu-warmup'], 3) * 1000) cpuMark = Object.assign({at: Date.now()}, procTree(bpid));
    }
    if (!OPT.quiet) emit(Object.assign({type: 'stats'}, st));
    if (st.fatal) { log('fatal:', st.fatal); exitCode = 2; break; }
    if (duration > 0 && Date.now() - t0 >= duration * 1000) break;
  }
  await shutdown('done');
}

main().catch(e => { log('FAIL', e && e.stack || e); process.exit(1); });
