using System.Globalization;
using System.Text;
using System.Text.Json;

namespace LoraPS.Tokenization;

/// <summary>
/// The "normalizer" step of a Hugging Face tokenizer.json: text → text before pre-tokenization.
/// Microsoft.ML.Tokenizers has only lower/upper-case and SentencePiece normalizers, so the HF ones are here.
/// </summary>
internal abstract class TextNormalizer
{
    public abstract string Normalize(string text);

    /// <summary>Builds the normalizer described by a tokenizer.json "normalizer" object (null when there is none).</summary>
    public static TextNormalizer? FromJson(JsonElement? json, string source)
    {
        if (json is not JsonElement e)
        {
            return null;
        }
        string type = e.RequiredString("type", source);
        return type switch
        {
            "Sequence" => new SequenceNormalizer(
                e.RequiredArray("normalizers", source).Select(n => FromJson(n, source)).OfType<TextNormalizer>().ToArray()),
            "NFC" => new UnicodeFormNormalizer(NormalizationForm.FormC),
            "NFD" => new UnicodeFormNormalizer(NormalizationForm.FormD),
            "NFKC" => new UnicodeFormNormalizer(NormalizationForm.FormKC),
            "NFKD" => new UnicodeFormNormalizer(NormalizationForm.FormKD),
            "Lowercase" => new LowercaseNormalizer(),
            "Strip" => new StripNormalizer(e.OptionalBool("strip_left") ?? true, e.OptionalBool("strip_right") ?? true),
            "StripAccents" => new StripAccentsNormalizer(),
            "Replace" => new ReplaceNormalizer(TextPattern.FromJson(e.Required("pattern", source), source), e.RequiredString("content", source)),
            "Prepend" => new PrependNormalizer(e.RequiredString("prepend", source)),
            "Append" => new AppendNormalizer(e.RequiredString("append", source)),
            "BertNormalizer" => new BertNormalizer(
                cleanText: e.OptionalBool("clean_text") ?? true,
                handleChineseChars: e.OptionalBool("handle_chinese_chars") ?? true,
                stripAccents: e.OptionalBool("strip_accents"),
                lowercase: e.OptionalBool("lowercase") ?? true),
            "ByteLevel" => new ByteLevelNormalizer(),
            _ => throw new NotSupportedException(
                $"{source}: normalizer type '{type}' is not supported (supported: Sequence, NFC, NFD, NFKC, NFKD, Lowercase, " +
                "Strip, StripAccents, Replace, Prepend, Append, BertNormalizer, ByteLevel)."),
        };
    }
}

internal sealed class SequenceNormalizer(IReadOnlyList<TextNormalizer> steps) : TextNormalizer
{
    public override string Normalize(string text)
    {
        foreach (TextNormalizer step in steps)
        {
            text = step.Normalize(text);
        }
        return text;
    }
}

internal sealed class UnicodeFormNormalizer(NormalizationForm form) : TextNormalizer
{
    public override string Normalize(string text) => text.Normalize(form);
}

internal sealed class LowercaseNormalizer : TextNormalizer
{
    public override string Normalize(string text) => UnicodeText.ToLowerFull(text);
}

internal sealed class StripNormalizer(bool left, bool right) : TextNormalizer
{
    // Rust's trim_start/trim_end use the Unicode White_Space property, the same set as char.IsWhiteSpace.
    public override string Normalize(string text) => (left, right) switch
    {
        (true, true) => text.Trim(),
        (true, false) => text.TrimStart(),
        (false, true) => text.TrimEnd(),
        _ => text,
    };
}

/// <summary>Removes combining marks; meant to follow NFD (HF's StripAccents does not decompose by itself).</summary>
internal sealed class StripAccentsNormalizer : TextNormalizer
{
    public override string Normalize(string text) => UnicodeText.RemoveMarks(text, nonSpacingOnly: false);
}

internal sealed class ReplaceNormalizer(TextPattern pattern, string content) : TextNormalizer
{
    public override string Normalize(string text) => pattern.Replace(text, content);
}

internal sealed class PrependNormalizer(string prefix) : TextNormalizer
{
    // HF prepends to non-empty strings only: "" stays "" (so an empty input gives no "▁" token).
    public override string Normalize(string text) => text.Length == 0 ? text : prefix + text;
}

internal sealed class AppendNormalizer(string suffix) : TextNormalizer
{
    public override string Normalize(string text) => text.Length == 0 ? text : text + suffix;
}

internal sealed class ByteLevelNormalizer : TextNormalizer
{
    public override string Normalize(string text) => ByteLevelAlphabet.Encode(text);
}

/// <summary>
/// BERT's text cleanup, in the order of tokenizers' <c>BertNormalizer</c>: drop NUL, U+FFFD and control
/// characters, turn whitespace into ' ', put spaces around CJK ideographs, strip accents (NFD, then drop Mn;
/// by default only when lowercasing, as in the original BERT uncased vocabularies), lowercase.
/// </summary>
internal sealed class BertNormalizer(bool cleanText, bool handleChineseChars, bool? stripAccents, bool lowercase) : TextNormalizer
{
    public override string Normalize(string text)
    {
        if (cleanText)
        {
            text = Clean(text);
        }
        if (handleChineseChars)
        {
            text = PadChineseChars(text);
        }
        if (stripAccents ?? lowercase)
        {
            text = UnicodeText.RemoveMarks(text.Normalize(NormalizationForm.FormD), nonSpacingOnly: true);
        }
        if (lowercase)
        {
            text = UnicodeText.ToLowerFull(text);
        }
        return text;
    }

    private static string Clean(string text)
    {
        var sb = new StringBuilder(text.Length);
        foreach (Rune r in text.EnumerateRunes())
        {
            if (r.Value == 0 || r.Value == 0xFFFD)
            {
                continue;
            }
            bool tabOrNewline = r.Value is '\t' or '\n' or '\r';
            // Control characters go first, so \v, \f and U+0085 are dropped rather than turned into spaces.
            if (!tabOrNewline && UnicodeText.IsOther(Rune.GetUnicodeCategory(r)))
            {
                continue;
            }
            sb.Append(tabOrNewline || Rune.IsWhiteSpace(r) ? " " : r.ToString());
        }
        return sb.ToString();
    }

    private static string PadChineseChars(string text)
    {
        var sb = new StringBuilder(text.Length);
        foreach (Rune r in text.EnumerateRunes())
        {
            if (UnicodeText.IsCjkIdeograph(r.Value))
            {
                sb.Append(' ').Append(r.ToString()).Append(' ');
            }
            else
            {
                sb.Append(r.ToString());
            }
        }
        return sb.ToString();
    }
}

/// <summary>A literal string or an Oniguruma regex, as in tokenizer.json's <c>{"String": …}</c> / <c>{"Regex": …}</c>.</summary>
internal sealed class TextPattern
{
    private readonly string? _literal;
    private readonly OnigCompatibleRegex? _regex;

    private TextPattern(string? literal, OnigCompatibleRegex? regex)
    {
        _literal = literal;
        _regex = regex;
    }

    public static TextPattern Literal(string s) => new(s, null);

    public static TextPattern FromRegex(string regex, string source) => new(null, new OnigCompatibleRegex(regex, source));

    public static TextPattern FromJson(JsonElement json, string source)
    {
        if (json.OptionalString("String") is string literal)
        {
            return new TextPattern(literal, null);
        }
        if (json.OptionalString("Regex") is string regex)
        {
            return new TextPattern(null, new OnigCompatibleRegex(regex, source));
        }
        throw new InvalidDataException($"{source}: a pattern must be {{\"String\": …}} or {{\"Regex\": …}}, found {json.GetRawText()}.");
    }

    public List<(int Start, int Length)> Matches(string text)
    {
        if (_regex is not null)
        {
            return _regex.Matches(text);
        }
        var result = new List<(int, int)>();
        if (_literal!.Length == 0)
        {
            return result;
        }
        for (int i = text.IndexOf(_literal, StringComparison.Ordinal); i >= 0; i = text.IndexOf(_literal, i + _literal.Length, StringComparison.Ordinal))
        {
            result.Add((i, _literal.Length));
        }
        return result;
    }

    public string Replace(string text, string content) =>
        _regex is not null ? _regex.Replace(text, content)
        : _literal!.Length == 0 ? text
        : text.Replace(_literal, content, StringComparison.Ordinal);
}
