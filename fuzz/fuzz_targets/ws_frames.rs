//! Arbitrary bytes from a server, in arbitrary pieces, under arbitrary limits, into phx's
//! WebSocket frame reader: never a panic, and the same messages and the same end as
//! tungstenite's reader (but for a refused frame cut off, which phx refuses by its header).
#![no_main]

use libfuzzer_sys::fuzz_target;
use phx_client::fuzzing::differential;
use phx_client::WebSocketConfig;

fuzz_target!(|input: (u16, u16, u32, Vec<u16>, &[u8])| {
    let (buffer, max_frame, max_message, chunks, bytes) = input;
    let chunks: Vec<usize> = chunks.into_iter().take(16).map(usize::from).collect();
    let config = WebSocketConfig::default()
        .read_buffer_size(usize::from(buffer))
        .max_frame_size(Some(usize::from(max_frame).max(1)))
        .max_message_size((max_message != 0).then_some(max_message as usize));
    differential(&config, bytes, &chunks);
});
