// Socket.IO 4.8 peer for the sync-bench fan-out benchmark, started by the harness as a child process.
// Listens on 127.0.0.1 (a free port), prints the port as the first line of stdout, exits when stdin closes.
// Subscribers authenticate with token `u<n>` (session number n, kept in `socket.data`) and join room
// `/bench`. The publisher (auth `{token, pub: true}`, not in the room) emits `pub` with `{k, mode}` and
// gets an ack once the event is handed to every recipient: `plain` broadcasts to the room; `filter-all` /
// `filter-half` run a per-socket filter of the same shape as the Rust app's (read the session, decide) and
// emit to each socket that passes.
'use strict';

const http = require('node:http');
const { Server } = require('socket.io');

const ROOM = '/bench';

const httpServer = http.createServer();
const io = new Server(httpServer, {
  transports: ['websocket'],
  perMessageDeflate: false,
  httpCompression: false,
  serveClient: false,
  maxHttpBufferSize: 1e6,
});

io.use((socket, next) => {
  const token = socket.handshake.auth && socket.handshake.auth.token;
  const match = typeof token === 'string' ? /^u(\d+)$/.exec(token) : null;
  if (!match) {
    next(new Error('token must be u<n>'));
    return;
  }
  socket.data.session = Number(match[1]);
  socket.data.publisher = socket.handshake.auth.pub === true;
  next();
});

// Pass everyone, or the recipients whose session number is even.
function filter(socket, passAll) {
  return passAll || socket.data.session % 2 === 0;
}

io.on('connection', (socket) => {
  // The publisher (auth `pub: true`) does not subscribe.
  if (!socket.data.publisher) {
    socket.join(ROOM);
  }
  socket.on('pub', (msg, ack) => {
    const k = msg && msg.k;
    const mode = msg && msg.mode;
    if (mode === 'plain') {
      io.to(ROOM).emit('tick', k);
    } else {
      const passAll = mode === 'filter-all';
      const members = io.sockets.adapter.rooms.get(ROOM);
      if (members) {
        for (const id of members) {
          const recipient = io.sockets.sockets.get(id);
          if (recipient && recipient !== socket && filter(recipient, passAll)) {
            recipient.emit('tick', k);
          }
        }
      }
    }
    if (typeof ack === 'function') {
      ack('ok');
    }
  });
});

httpServer.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${httpServer.address().port}\n`);
});

process.stdin.on('data', () => {});
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
process.stdin.resume();
