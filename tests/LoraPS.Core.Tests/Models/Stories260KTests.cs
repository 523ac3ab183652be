using System.Text;
using System.Text.Json;
using LoraPS.Models;
using TorchSharp;
using Xunit;
using static LoraPS.Tests.Models.ModelTestFiles;
using static TorchSharp.torch;

namespace LoraPS.Tests.Models;

/// <summary>
/// The bundled real pretrained Llama (Karpathy's stories260K): greedy decoding from BOS must reproduce its documented
/// sample, with and without the KV cache.
/// </summary>
public class Stories260KTests
{
    private const string DocumentedSample =
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.";

    [Fact]
    public void LoadsWithTiedEmbeddingsAndGroupedQueryAttention()
    {
        using var loaded = ModelLoader.Load(Stories260K);
        var c = loaded.Config;
        Assert.Equal((8, 4, 8, 172, 5, 512), (c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, c.IntermediateSize, c.NumHiddenLayers, c.VocabSize));
        Assert.True(c.TieWordEmbeddings);
        Assert.Equal(new TiedWeight("lm_head.weight", "model.embed_tokens.weight"), Assert.Single(loaded.Report.Tied));
        Assert.Empty(loaded.Report.Missing);
        Assert.Empty(loaded.Report.Unexpected);
        Assert.Equal(260_032, loaded.ParameterCount);   // README: 260,032 parameters with tied embeddings
        var sd = loaded.Model.state_dict();
        Assert.Same(sd["model.embed_tokens.weight"], sd["lm_head.weight"]);
        Assert.Equal(new long[] { 32, 64 }, sd["model.layers.0.self_attn.k_proj.weight"].shape);
    }

    [Fact]
    public void GreedyDecodingReproducesTheDocumentedSampleWithAndWithoutCache()
    {
        using var loaded = ModelLoader.Load(Stories260K);
        var model = loaded.Model;
        const int steps = 60;

        var uncached = new List<long> { 1 };   // <s>
        using (no_grad()) {
            for (var i = 0; i < steps; i++) {
                using var scope = NewDisposeScope();
                var logits = model.Forward(torch.tensor(uncached.ToArray()).unsqueeze(0)).Logits!;
                uncached.Add(logits[0, -1].argmax().item<long>());
            }
        }

        foreach (var capacity in new long[] { 0, 128 }) {
            var cached = new List<long> { 1 };
            using var cache = model.CreateKvCache(capacity);
            using (no_grad()) {
                for (var i = 0; i < steps; i++) {
                    using var scope = NewDisposeScope();
                    var step = torch.tensor(new[] { cached[^1] }).unsqueeze(0);   // only the newest token
                    var logits = model.Forward(step, cache: cache).Logits!;
                    Assert.Equal(new long[] { 1, 1, 512 }, logits.shape);
                    cached.Add(logits[0, -1].argmax().item<long>());
                }
            }
            Assert.Equal(steps, cache.Length);
            Assert.Equal(uncached, cached);
        }

        // tokenizer.json: ▁Once = 403, ▁upon = 407, ▁a = 261, ▁time = 378, "," = 432.
        Assert.Equal(new long[] { 403, 407, 261, 378, 432 }, uncached.Skip(1).Take(5));
        var text = Decode(uncached.Skip(1));
        Assert.StartsWith(DocumentedSample, text);
    }

    [Fact]
    public void ChunkedPrefillThenDecodeMatchesFullForward()
    {
        using var loaded = ModelLoader.Load(Stories260K);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var ids = torch.tensor(new long[] { 1, 403, 407, 261, 378, 432, 383, 286, 261, 376 }).unsqueeze(0);
        var full = loaded.Model.Forward(ids).Logits!;
        using var cache = loaded.Model.CreateKvCache();
        var first = loaded.Model.Forward(ids.narrow(1, 0, 6), cache: cache).Logits!;
        var second = loaded.Model.Forward(ids.narrow(1, 6, 3), cache: cache).Logits!;
        var third = loaded.Model.Forward(ids.narrow(1, 9, 1), cache: cache).Logits!;
        // Chunks of 6, 3 and 1 rows take different matmul blockings than one of 10, so the sums differ in the last
        // bits; torch.allclose's default rtol (1e-5) on top of 1e-5 absolute covers that and nothing more.
        AssertClose(full, torch.cat(new[] { first, second, third }, 1), 1e-5, 1e-5, "chunked cached logits");
        Assert.Equal(10, cache.Length);
    }

    /// <summary>SentencePiece decoding with tokenizer.json's pieces: ▁ is a space, &lt;0xNN&gt; is a byte.</summary>
    private static string Decode(IEnumerable<long> ids)
    {
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(Stories260K, "tokenizer.json")));
        var pieces = json.RootElement.GetProperty("model").GetProperty("vocab").EnumerateObject()
            .ToDictionary(p => p.Value.GetInt64(), p => p.Name);
        var bytes = new List<byte>();
        foreach (var id in ids) {
            var piece = pieces[id];
            if (piece.Length == 6 && piece.StartsWith("<0x") && piece.EndsWith('>'))
                bytes.Add(Convert.ToByte(piece[3..5], 16));
            else
                bytes.AddRange(Encoding.UTF8.GetBytes(piece.Replace('▁', ' ')));
        }
        return Encoding.UTF8.GetString(bytes.ToArray()).TrimStart(' ');
    }
}
