using System.Globalization;
using System.Text;

namespace LoraPS.Adapters;

/// <summary>
/// Python's <c>json.dumps(value, indent=2, sort_keys=True)</c>, byte for byte: PEFT writes
/// <c>adapter_config.json</c> this way, and matching it keeps files diffable against PEFT's.
/// </summary>
/// <remarks>
/// Values: null, bool, int/long, double, string, <see cref="IEnumerable{T}"/> of values (a JSON list) and
/// <see cref="IReadOnlyDictionary{TKey,TValue}"/> with string keys (an object, keys sorted by code point). Floats
/// follow Python's <c>repr</c> (<c>0.0</c>, <c>0.05</c>, <c>1e-05</c>); strings are ASCII-escaped (<c>ensure_ascii</c>).
/// </remarks>
internal static class PythonJson
{
    public static string Dumps(object? value)
    {
        var sb = new StringBuilder();
        Write(sb, value, 0);
        return sb.ToString();
    }

    static void Write(StringBuilder sb, object? value, int depth)
    {
        switch (value)
        {
            case null: sb.Append("null"); break;
            case bool b: sb.Append(b ? "true" : "false"); break;
            case int i: sb.Append(i.ToString(CultureInfo.InvariantCulture)); break;
            case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); break;
            case double d: sb.Append(FloatRepr(d)); break;
            case string s: WriteString(sb, s); break;
            case IEnumerable<KeyValuePair<string, object?>> obj: WriteObject(sb, obj, depth); break;
            case System.Collections.IEnumerable list: WriteList(sb, list.Cast<object?>().ToList(), depth); break;
            default: throw new ArgumentException($"PythonJson cannot write a {value.GetType().Name}.");
        }
    }

    static void WriteObject(StringBuilder sb, IEnumerable<KeyValuePair<string, object?>> obj, int depth)
    {
        var items = obj.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList();
        if (items.Count == 0) { sb.Append("{}"); return; }
        sb.Append('{');
        for (int k = 0; k < items.Count; k++)
        {
            sb.Append(k == 0 ? "\n" : ",\n").Append(' ', 2 * (depth + 1));
            WriteString(sb, items[k].Key);
            sb.Append(": ");
            Write(sb, items[k].Value, depth + 1);
        }
        sb.Append('\n').Append(' ', 2 * depth).Append('}');
    }

    static void WriteList(StringBuilder sb, List<object?> items, int depth)
    {
        if (items.Count == 0) { sb.Append("[]"); return; }
        sb.Append('[');
        for (int k = 0; k < items.Count; k++)
        {
            sb.Append(k == 0 ? "\n" : ",\n").Append(' ', 2 * (depth + 1));
            Write(sb, items[k], depth + 1);
        }
        sb.Append('\n').Append(' ', 2 * depth).Append(']');
    }

    static void WriteString(StringBuilder sb, string s)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20 || c > 0x7e) sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }

    /// <summary>
    /// Python's <c>repr(float)</c>: the shortest round-trip digits, in positional notation when the decimal
    /// exponent is in [-4, 16), else <c>d.ddde±XX</c>; integral values keep a <c>.0</c>.
    /// </summary>
    internal static string FloatRepr(double d)
    {
        if (double.IsNaN(d)) return "NaN";
        if (double.IsInfinity(d)) return d > 0 ? "Infinity" : "-Infinity";
        if (d == 0) return double.IsNegative(d) ? "-0.0" : "0.0";

        // "E16" would not be shortest; "R" is, so take its digits and exponent and lay them out Python's way.
        var r = Math.Abs(d).ToString("R", CultureInfo.InvariantCulture);
        int exp10 = 0;
        int e = r.IndexOfAny(['E', 'e']);
        if (e >= 0)
        {
            exp10 = int.Parse(r[(e + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
            r = r[..e];
        }
        int dot = r.IndexOf('.');
        string digits = dot < 0 ? r : r.Remove(dot, 1);
        int pointPos = (dot < 0 ? r.Length : dot) + exp10; // value = 0.digits × 10^pointPos after trimming zeros
        int lead = 0;
        while (lead < digits.Length - 1 && digits[lead] == '0') { lead++; pointPos--; }
        digits = digits[lead..].TrimEnd('0');
        if (digits.Length == 0) digits = "0";

        string body;
        if (pointPos > -4 && pointPos <= 16)
        {
            if (pointPos <= 0) body = "0." + new string('0', -pointPos) + digits;
            else if (pointPos >= digits.Length) body = digits + new string('0', pointPos - digits.Length) + ".0";
            else body = digits[..pointPos] + "." + digits[pointPos..];
        }
        else
        {
            int exponent = pointPos - 1;
            string mantissa = digits.Length == 1 ? digits : digits[0] + "." + digits[1..];
            body = mantissa + "e" + (exponent < 0 ? "-" : "+") + Math.Abs(exponent).ToString("00", CultureInfo.InvariantCulture);
        }
        return d < 0 ? "-" + body : body;
    }
}
