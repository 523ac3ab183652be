using System.Text;
using System.Text.Json;

namespace LoraPS.Tokenization;

/// <summary>A piece of normalized text on its way to the model; <see cref="AtStart"/> says it begins the input.</summary>
internal readonly record struct TextPiece(string Text, bool AtStart);

/// <summary>How a split keeps the matched delimiter (tokenizers' <c>SplitDelimiterBehavior</c>).</summary>
internal enum SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous }

/// <summary>
/// The "pre_tokenizer" step of a Hugging Face tokenizer.json: cuts normalized text into words that the model
/// encodes independently. Implemented here rather than with Microsoft.ML.Tokenizers' <c>PreTokenizer</c>
/// because HF's byte-level mapping, Metaspace prepend schemes and split behaviours have no equivalent there.
/// </summary>
internal abstract class PreTokenizerStep
{
    public abstract void Split(TextPiece piece, List<TextPiece> output);

    public List<TextPiece> PreTokenize(string text, bool atStart)
    {
        var output = new List<TextPiece>();
        Split(new TextPiece(text, atStart), output);
        return output;
    }

    public static PreTokenizerStep? FromJson(JsonElement? json, string source)
    {
        if (json is not JsonElement e)
        {
            return null;
        }
        string type = e.RequiredString("type", source);
        return type switch
        {
            "Sequence" => new SequencePreTokenizer(
                e.RequiredArray("pretokenizers", source).Select(p => FromJson(p, source)).OfType<PreTokenizerStep>().ToArray()),
            "ByteLevel" => new ByteLevelPreTokenizer(e.OptionalBool("add_prefix_space") ?? true, e.OptionalBool("use_regex") ?? true, source),
            "Split" => new PatternSplitPreTokenizer(
                TextPattern.FromJson(e.Required("pattern", source), source),
                ParseBehavior(e.RequiredString("behavior", source), source),
                e.OptionalBool("invert") ?? false),
            "Metaspace" => MetaspacePreTokenizer.FromJson(e, source),
            "BertPreTokenizer" => new BertPreTokenizer(),
            "Whitespace" => new PatternSplitPreTokenizer(
                // tokenizers' Whitespace is \w+|[^\w\s]+ in Oniguruma, whose \w is letters, marks, decimal digits and connectors.
                TextPattern.FromRegex(@"[\p{L}\p{M}\p{Nd}\p{Pc}]+|[^\p{L}\p{M}\p{Nd}\p{Pc}\s]+", source),
                SplitBehavior.Removed, invert: true),
            "WhitespaceSplit" => new CharSplitPreTokenizer(Rune.IsWhiteSpace, SplitBehavior.Removed),
            "Punctuation" => new CharSplitPreTokenizer(UnicodeText.IsBertPunctuation,
                ParseBehavior(e.OptionalString("behavior") ?? "Isolated", source)),
            "Digits" => new CharSplitPreTokenizer(UnicodeText.IsNumeric,
                e.OptionalBool("individual_digits") == true ? SplitBehavior.Isolated : SplitBehavior.Contiguous),
            "CharDelimiterSplit" => CharDelimiter(e.RequiredString("delimiter", source)),
            _ => throw new NotSupportedException(
                $"{source}: pre_tokenizer type '{type}' is not supported (supported: Sequence, ByteLevel, Split, Metaspace, " +
                "BertPreTokenizer, Whitespace, WhitespaceSplit, Punctuation, Digits, CharDelimiterSplit)."),
        };
    }

    private static PreTokenizerStep CharDelimiter(string delimiter)
    {
        Rune d = delimiter.EnumerateRunes().First();
        return new CharSplitPreTokenizer(r => r == d, SplitBehavior.Removed);
    }

    internal static SplitBehavior ParseBehavior(string name, string source) => name switch
    {
        "Removed" => SplitBehavior.Removed,
        "Isolated" => SplitBehavior.Isolated,
        "MergedWithPrevious" => SplitBehavior.MergedWithPrevious,
        "MergedWithNext" => SplitBehavior.MergedWithNext,
        "Contiguous" => SplitBehavior.Contiguous,
        _ => throw new InvalidDataException($"{source}: unknown split behavior '{name}'."),
    };

    /// <summary>
    /// Cuts <paramref name="piece"/> at the given matches exactly like tokenizers' <c>NormalizedString::split</c>:
    /// gaps and matches alternate, <paramref name="invert"/> swaps them, the behaviour decides what a match
    /// becomes, and empty results are dropped.
    /// </summary>
    internal static void SplitAt(TextPiece piece, List<(int Start, int Length)> matches, SplitBehavior behavior, bool invert, List<TextPiece> output)
    {
        string text = piece.Text;
        var spans = new List<(int Start, int End, bool IsMatch)>(matches.Count * 2 + 1);
        int previous = 0;
        foreach ((int start, int length) in matches)
        {
            if (previous != start)
            {
                spans.Add((previous, start, invert));
            }
            spans.Add((start, start + length, !invert));
            previous = start + length;
        }
        if (previous != text.Length)
        {
            spans.Add((previous, text.Length, invert));
        }

        var kept = new List<(int Start, int End)>(spans.Count);
        switch (behavior)
        {
            case SplitBehavior.Removed:
                kept.AddRange(spans.Where(s => !s.IsMatch).Select(s => (s.Start, s.End)));
                break;
            case SplitBehavior.Isolated:
                kept.AddRange(spans.Select(s => (s.Start, s.End)));
                break;
            case SplitBehavior.MergedWithPrevious:
            {
                bool previousMatch = false;
                foreach (var s in spans)
                {
                    if (s.IsMatch && !previousMatch && kept.Count > 0)
                    {
                        kept[^1] = (kept[^1].Start, s.End);
                    }
                    else
                    {
                        kept.Add((s.Start, s.End));
                    }
                    previousMatch = s.IsMatch;
                }
                break;
            }
            case SplitBehavior.MergedWithNext:
            {
                bool previousMatch = false;
                for (int i = spans.Count - 1; i >= 0; i--)
                {
                    var s = spans[i];
                    if (s.IsMatch && !previousMatch && kept.Count > 0)
                    {
                        kept[^1] = (s.Start, kept[^1].End);
                    }
                    else
                    {
                        kept.Add((s.Start, s.End));
                    }
                    previousMatch = s.IsMatch;
                }
                kept.Reverse();
                break;
            }
            case SplitBehavior.Contiguous:
            {
                bool previousMatch = false;
                foreach (var s in spans)
                {
                    if (s.IsMatch == previousMatch && kept.Count > 0)
                    {
                        kept[^1] = (kept[^1].Start, s.End);
                    }
                    else
                    {
                        kept.Add((s.Start, s.End));
                    }
                    previousMatch = s.IsMatch;
                }
                break;
            }
        }

        foreach ((int start, int end) in kept)
        {
            if (end > start)
            {
                output.Add(new TextPiece(text[start..end], piece.AtStart && start == 0));
            }
        }
    }
}

internal sealed class SequencePreTokenizer(IReadOnlyList<PreTokenizerStep> steps) : PreTokenizerStep
{
    public IReadOnlyList<PreTokenizerStep> Steps => steps;

    public override void Split(TextPiece piece, List<TextPiece> output)
    {
        var current = new List<TextPiece> { piece };
        foreach (PreTokenizerStep step in steps)
        {
            var next = new List<TextPiece>(current.Count * 2);
            foreach (TextPiece p in current)
            {
                step.Split(p, next);
            }
            current = next;
        }
        output.AddRange(current);
    }
}

internal sealed class PatternSplitPreTokenizer(TextPattern pattern, SplitBehavior behavior, bool invert) : PreTokenizerStep
{
    public override void Split(TextPiece piece, List<TextPiece> output) =>
        SplitAt(piece, pattern.Matches(piece.Text), behavior, invert, output);
}

/// <summary>Splits on every code point the predicate accepts (one match per code point, as tokenizers does for char patterns).</summary>
internal sealed class CharSplitPreTokenizer(Func<Rune, bool> isDelimiter, SplitBehavior behavior) : PreTokenizerStep
{
    public override void Split(TextPiece piece, List<TextPiece> output)
    {
        var matches = new List<(int, int)>();
        int index = 0;
        foreach (Rune r in piece.Text.EnumerateRunes())
        {
            if (isDelimiter(r))
            {
                matches.Add((index, r.Utf16SequenceLength));
            }
            index += r.Utf16SequenceLength;
        }
        SplitAt(piece, matches, behavior, invert: false, output);
    }
}

/// <summary>BERT: split on whitespace (dropped), then isolate every punctuation character.</summary>
internal sealed class BertPreTokenizer : PreTokenizerStep
{
    private readonly CharSplitPreTokenizer _whitespace = new(Rune.IsWhiteSpace, SplitBehavior.Removed);
    private readonly CharSplitPreTokenizer _punctuation = new(UnicodeText.IsBertPunctuation, SplitBehavior.Isolated);

    public override void Split(TextPiece piece, List<TextPiece> output)
    {
        var words = new List<TextPiece>();
        _whitespace.Split(piece, words);
        foreach (TextPiece word in words)
        {
            _punctuation.Split(word, output);
        }
    }
}

/// <summary>
/// GPT-2 style: optionally prefix a space, split with GPT-2's regex, then write every UTF-8 byte as its
/// byte-level character (so " world" becomes "Ġworld", the form the vocabulary and merges use).
/// </summary>
internal sealed class ByteLevelPreTokenizer : PreTokenizerStep
{
    /// <summary>GPT-2's word pattern, hard-coded in tokenizers' ByteLevel pre-tokenizer.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private readonly bool _addPrefixSpace;
    private readonly TextPattern? _pattern;

    public ByteLevelPreTokenizer(bool addPrefixSpace, bool useRegex, string source)
    {
        _addPrefixSpace = addPrefixSpace;
        _pattern = useRegex ? TextPattern.FromRegex(Gpt2Pattern, source) : null;
    }

    public override void Split(TextPiece piece, List<TextPiece> output)
    {
        string text = piece.Text;
        if (_addPrefixSpace && text.Length > 0 && text[0] != ' ')
        {
            text = " " + text;
        }
        var words = new List<TextPiece>();
        if (_pattern is null)
        {
            words.Add(piece with { Text = text });
        }
        else
        {
            SplitAt(piece with { Text = text }, _pattern.Matches(text), SplitBehavior.Isolated, invert: false, words);
        }
        foreach (TextPiece word in words)
        {
            output.Add(word with { Text = ByteLevelAlphabet.Encode(word.Text) });
        }
    }
}

/// <summary>
/// SentencePiece emulation: spaces become '▁' and a '▁' is prepended (always, only to the first piece of the
/// input — Llama's non-legacy mode — or never); with <c>split</c> the text is cut before each '▁'.
/// </summary>
internal sealed class MetaspacePreTokenizer(char replacement, MetaspacePreTokenizer.Prepend prependScheme, bool split) : PreTokenizerStep
{
    public enum Prepend { Always, First, Never }

    public char Replacement => replacement;

    public Prepend PrependScheme => prependScheme;

    public static MetaspacePreTokenizer FromJson(JsonElement e, string source)
    {
        char replacement = (e.OptionalString("replacement") ?? "\u2581") is { Length: 1 } r
            ? r[0] : throw new NotSupportedException($"{source}: Metaspace replacement must be a single UTF-16 character.");
        // Older files have "add_prefix_space": bool instead of "prepend_scheme".
        Prepend scheme = e.OptionalString("prepend_scheme") switch
        {
            "always" => Prepend.Always,
            "first" => Prepend.First,
            "never" => Prepend.Never,
            null => e.OptionalBool("add_prefix_space") == false ? Prepend.Never : Prepend.Always,
            string other => throw new InvalidDataException($"{source}: unknown Metaspace prepend_scheme '{other}'."),
        };
        return new MetaspacePreTokenizer(replacement, scheme, e.OptionalBool("split") ?? true);
    }

    public override void Split(TextPiece piece, List<TextPiece> output)
    {
        string text = piece.Text.Replace(' ', replacement);
        bool prepend = prependScheme == Prepend.Always || (prependScheme == Prepend.First && piece.AtStart);
        if (prepend && text.Length > 0 && text[0] != replacement)
        {
            text = replacement + text;
        }
        var replaced = piece with { Text = text };
        if (!split)
        {
            if (text.Length > 0)
            {
                output.Add(replaced);
            }
            return;
        }
        var matches = new List<(int, int)>();
        for (int i = text.IndexOf(replacement); i >= 0; i = text.IndexOf(replacement, i + 1))
        {
            matches.Add((i, 1));
        }
        SplitAt(replaced, matches, SplitBehavior.MergedWithNext, invert: false, output);
    }
}
