using System.Text;
using System.Text.Json;

namespace LoraPS.Tokenization;

/// <summary>
/// The "decoder" step of a Hugging Face tokenizer.json: token strings → text. Each step maps the token list to
/// a new list (<c>decode_chain</c>); the result is the concatenation.
/// </summary>
internal abstract class TokenDecoder
{
    public abstract List<string> DecodeChain(List<string> tokens);

    public string Decode(List<string> tokens) => string.Concat(DecodeChain(tokens));

    public static TokenDecoder? FromJson(JsonElement? json, string source)
    {
        if (json is not JsonElement e)
        {
            return null;
        }
        string type = e.RequiredString("type", source);
        return type switch
        {
            "Sequence" => new SequenceDecoder(
                e.RequiredArray("decoders", source).Select(d => FromJson(d, source)).OfType<TokenDecoder>().ToArray()),
            "ByteLevel" => new ByteLevelDecoder(),
            "Metaspace" => new MetaspaceDecoder(MetaspacePreTokenizer.FromJson(e, source)),
            "WordPiece" => new WordPieceDecoder(e.OptionalString("prefix") ?? "##", e.OptionalBool("cleanup") ?? true),
            "BPEDecoder" => new BpeSuffixDecoder(e.OptionalString("suffix") ?? "</w>"),
            "Replace" => new ReplaceDecoder(TextPattern.FromJson(e.Required("pattern", source), source), e.RequiredString("content", source)),
            "ByteFallback" => new ByteFallbackDecoder(),
            "Fuse" => new FuseDecoder(),
            "Strip" => new StripDecoder(
                e.RequiredString("content", source) is { Length: 1 } c ? c[0]
                    : throw new NotSupportedException($"{source}: Strip decoder content must be one character."),
                e.OptionalInt("start") ?? 0, e.OptionalInt("stop") ?? 0),
            _ => throw new NotSupportedException(
                $"{source}: decoder type '{type}' is not supported (supported: Sequence, ByteLevel, Metaspace, WordPiece, " +
                "BPEDecoder, Replace, ByteFallback, Fuse, Strip)."),
        };
    }
}

internal sealed class SequenceDecoder(IReadOnlyList<TokenDecoder> steps) : TokenDecoder
{
    public IReadOnlyList<TokenDecoder> Steps => steps;

    public override List<string> DecodeChain(List<string> tokens)
    {
        foreach (TokenDecoder step in steps)
        {
            tokens = step.DecodeChain(tokens);
        }
        return tokens;
    }
}

/// <summary>Byte-level characters back to bytes, then UTF-8 (invalid sequences become U+FFFD, like from_utf8_lossy).</summary>
internal sealed class ByteLevelDecoder : TokenDecoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        var bytes = new List<byte>();
        foreach (string token in tokens)
        {
            int mark = bytes.Count;
            foreach (char c in token)
            {
                if (!ByteLevelAlphabet.TryGetByte(c, out byte b))
                {
                    // A token that is not byte-level text (an added token such as "<|im_start|>" with a space)
                    // is taken as its own UTF-8.
                    bytes.RemoveRange(mark, bytes.Count - mark);
                    bytes.AddRange(Encoding.UTF8.GetBytes(token));
                    break;
                }
                bytes.Add(b);
            }
        }
        return [Encoding.UTF8.GetString(bytes.ToArray())];
    }
}

internal sealed class MetaspaceDecoder(MetaspacePreTokenizer settings) : TokenDecoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        var result = new List<string>(tokens.Count);
        for (int i = 0; i < tokens.Count; i++)
        {
            var sb = new StringBuilder(tokens[i].Length);
            foreach (char c in tokens[i])
            {
                if (c != settings.Replacement)
                {
                    sb.Append(c);
                }
                else if (i != 0 || settings.PrependScheme == MetaspacePreTokenizer.Prepend.Never)
                {
                    sb.Append(' ');
                }
                // The first token's '▁' is the prepended one and is dropped.
            }
            result.Add(sb.ToString());
        }
        return result;
    }
}

/// <summary>Joins WordPiece tokens: "##" continues a word, anything else starts one; optional English cleanup.</summary>
internal sealed class WordPieceDecoder(string prefix, bool cleanup) : TokenDecoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        var result = new List<string>(tokens.Count);
        for (int i = 0; i < tokens.Count; i++)
        {
            string token = tokens[i];
            if (i != 0)
            {
                token = token.StartsWith(prefix, StringComparison.Ordinal) ? token[prefix.Length..] : " " + token;
            }
            // tokenizers cleans each token on its own (so " ' " across tokens survives; transformers' string-level
            // clean_up_tokenization_spaces handles that later).
            result.Add(cleanup ? CleanUp(token) : token);
        }
        return result;
    }

    private static string CleanUp(string token) => token
        .Replace(" .", ".", StringComparison.Ordinal).Replace(" ?", "?", StringComparison.Ordinal)
        .Replace(" !", "!", StringComparison.Ordinal).Replace(" ,", ",", StringComparison.Ordinal)
        .Replace(" ' ", "'", StringComparison.Ordinal).Replace(" n't", "n't", StringComparison.Ordinal)
        .Replace(" 'm", "'m", StringComparison.Ordinal).Replace(" do not", " don't", StringComparison.Ordinal)
        .Replace(" 's", "'s", StringComparison.Ordinal).Replace(" 've", "'ve", StringComparison.Ordinal)
        .Replace(" 're", "'re", StringComparison.Ordinal);

    /// <summary>transformers' <c>clean_up_tokenization</c>, applied to the whole decoded string.</summary>
    public static string CleanUpTokenizationSpaces(string text) => text
        .Replace(" .", ".", StringComparison.Ordinal).Replace(" ?", "?", StringComparison.Ordinal)
        .Replace(" !", "!", StringComparison.Ordinal).Replace(" ,", ",", StringComparison.Ordinal)
        .Replace(" ' ", "'", StringComparison.Ordinal).Replace(" n't", "n't", StringComparison.Ordinal)
        .Replace(" 'm", "'m", StringComparison.Ordinal).Replace(" 's", "'s", StringComparison.Ordinal)
        .Replace(" 've", "'ve", StringComparison.Ordinal).Replace(" 're", "'re", StringComparison.Ordinal);
}

/// <summary>Classic BPE with an end-of-word suffix ("&lt;/w&gt;"): the suffix becomes a space, except at the very end.</summary>
internal sealed class BpeSuffixDecoder(string suffix) : TokenDecoder
{
    public override List<string> DecodeChain(List<string> tokens) =>
        tokens.Select((t, i) => t.Replace(suffix, i == tokens.Count - 1 ? "" : " ", StringComparison.Ordinal)).ToList();
}

internal sealed class ReplaceDecoder(TextPattern pattern, string content) : TokenDecoder
{
    public override List<string> DecodeChain(List<string> tokens) => tokens.Select(t => pattern.Replace(t, content)).ToList();
}

/// <summary>
/// Turns runs of SentencePiece byte tokens ("&lt;0xE2&gt;&lt;0x96&gt;&lt;0x81&gt;") back into text. A run that is not valid
/// UTF-8 becomes one U+FFFD per byte, as in tokenizers.
/// </summary>
internal sealed class ByteFallbackDecoder : TokenDecoder
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    public override List<string> DecodeChain(List<string> tokens)
    {
        var result = new List<string>(tokens.Count);
        var pending = new List<byte>();
        foreach (string token in tokens)
        {
            if (TryParseByteToken(token, out byte b))
            {
                pending.Add(b);
                continue;
            }
            Flush(pending, result);
            result.Add(token);
        }
        Flush(pending, result);
        return result;
    }

    /// <summary>Recognises "&lt;0xNN&gt;" (two hex digits, either case).</summary>
    public static bool TryParseByteToken(string token, out byte value)
    {
        value = 0;
        return token.Length == 6 && token.StartsWith("<0x", StringComparison.Ordinal) && token[5] == '>' &&
            byte.TryParse(token.AsSpan(3, 2), System.Globalization.NumberStyles.AllowHexSpecifier, null, out value);
    }

    private static void Flush(List<byte> pending, List<string> result)
    {
        if (pending.Count == 0)
        {
            return;
        }
        try
        {
            result.Add(StrictUtf8.GetString(pending.ToArray()));
        }
        catch (DecoderFallbackException)
        {
            result.AddRange(Enumerable.Repeat("\uFFFD", pending.Count));
        }
        pending.Clear();
    }
}

internal sealed class FuseDecoder : TokenDecoder
{
    public override List<string> DecodeChain(List<string> tokens) => [string.Concat(tokens)];
}

/// <summary>Removes up to <c>start</c> leading and <c>stop</c> trailing copies of one character from each token.</summary>
internal sealed class StripDecoder(char content, int start, int stop) : TokenDecoder
{
    public override List<string> DecodeChain(List<string> tokens) => tokens.Select(Strip).ToList();

    private string Strip(string token)
    {
        int from = 0;
        while (from < start && from < token.Length && token[from] == content)
        {
            from++;
        }
        int to = token.Length;
        while (token.Length - to < stop && to > from && token[to - 1] == content)
        {
            to--;
        }
        return token[from..to];
    }
}
