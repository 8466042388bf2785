// The init process of the LXC container of packets.test.ts: TCP and UDP echo servers, nothing else.
// libvirt starts it as PID 1 of the container (`<init>` = node, `<initarg>` = this file and the
// ports); the container shares the host's files, so no image is needed. libvirt itself configures
// eth0 (the interface's <ip> and <route>), before this runs.
//
//   node echo-init.mjs --tcp 22,80 --udp 53
//
// TCP: every byte comes back (a probe sends one and waits for it). UDP: every datagram goes back to
// its sender. Output goes to the container's console.
import dgram from 'node:dgram';
import net from 'node:net';

/** `--tcp 22,80` -> [22, 80]. */
function ports(flag) {
  const i = process.argv.indexOf(flag);
  if (i < 0) return [];
  return (process.argv[i + 1] ?? '').split(',').filter(Boolean).map(Number);
}

for (const port of ports('--tcp')) {
  net
    .createServer((sock) => {
      // Probes reset their connections; a peer that vanished behind a new drop must not pin a socket.
      sock.setTimeout(30_000, () => sock.destroy());
      sock.on('error', () => sock.destroy());
      sock.pipe(sock);
    })
    .listen({ host: '0.0.0.0', port }, () => console.log(`echo-init: tcp ${port}`));
}

for (const port of ports('--udp')) {
  const sock = dgram.createSocket('udp4');
  sock.on('message', (msg, from) => sock.send(msg, from.port, from.address));
  sock.on('error', (err) => console.log(`echo-init: udp ${port}: ${err.message}`));
  sock.bind({ address: '0.0.0.0', port }, () => console.log(`echo-init: udp ${port}`));
}

// PID 1 ignores signals it has no handler for: `virsh shutdown` sends SIGTERM.
process.on('SIGTERM', () => process.exit(0));
