// The plain Node.js receiver of issue 17 (the peer in bench/run.sh): reads the body and answers
// 200 {"status":"accepted"}. Nothing is kept, nothing is fsync'd.   node node_receiver.js PORT
const http = require("node:http");
http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    res.writeHead(200, { "Content-Type": "application/json" }).end('{"status":"accepted"}');
  });
}).listen(Number(process.argv[2]), "127.0.0.1");
