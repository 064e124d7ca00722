"""The hot-topics analysis (``services.intake.topics``) on synthetic months: how long a district's month takes.

``python -m bench.topics --per-month 20000 --months-back 3`` builds appeals from
phrase pools (forty matters, each worded many ways, in thirty places, by enterprises
drawn from a fifth as many as the appeals of a month; the first matter grows each
month), runs :func:`analyse` on them and prints the time of each run, the
themes found and the proposal. Seeded: the same arguments give the same appeals.
Asserts nothing; pure CPU, no server.
"""

from __future__ import annotations

import argparse
import random
import resource
import time
from datetime import datetime, timedelta

from services.intake.topics import SHANGHAI, TopicAppeal, TopicSettings, analyse, month_bounds, shift_month

PLACES = ["临空经济区", "航空港片区", "东升街道", "黄水镇", "九江街道", "西航港街道", "彭镇", "公兴街道", "黄甲街道",
          "怡心湖片区", "空港商圈", "奥特莱斯", "新鑫市场", "物流园", "电子信息产业园", "生物医药园", "西南航空港",
          "机场路", "东升大道", "蛟龙港", "双华路", "川大路", "棠湖公园", "白河公园", "华阳大道", "牧华路",
          "剑南大道", "藏卫路", "星空路", "金河路"]

MATTERS = [
    ("水电气保障", ["停电", "跳闸停电", "计划外停电", "电压不稳", "线路跳闸"], ["生产线停工", "冷库货物受损", "设备停机"]),
    ("水电气保障", ["停水", "水压太低", "供水管爆管", "自来水发黄"], ["车间无法生产", "员工食堂没水", "锅炉停了"]),
    ("水电气保障", ["燃气压力不够", "天然气停气", "燃气管道改造慢"], ["食堂做不了饭", "烘干线停产"]),
    ("水电气保障", ["用电增容审批慢", "变压器容量不够", "申请增容一直没批"], ["新生产线投不了产", "订单交不了货"]),
    ("人才招聘", ["招工难", "普工招不到人", "缺工严重", "技术工人难招"], ["订单交不了货", "生产线开不满"]),
    ("人才招聘", ["人才公寓排队太久", "人才补贴迟迟不到账", "人才引进落户手续复杂"], ["骨干员工想离职", "引进的人才留不住"]),
    ("人才招聘", ["社保缴费基数调整", "社保转移手续麻烦", "工伤认定太慢"], ["员工意见很大", "财务没法核算"]),
    ("市容环卫", ["垃圾清运不及时", "垃圾站臭味大", "垃圾桶满了没人收"], ["招来苍蝇老鼠", "顾客投诉"]),
    ("市容环卫", ["占道经营", "流动摊贩堵门", "夜市烧烤油烟"], ["门口进不了车", "消防通道被占"]),
    ("市容环卫", ["路灯不亮", "路灯坏了没人修", "整条路没有路灯"], ["下夜班员工走路危险", "晚上发生过抢劫"]),
    ("交通出行", ["左转车道太短", "路口拥堵", "红绿灯时间不合理", "高峰期堵车"], ["员工上班迟到", "货车进不了厂"]),
    ("交通出行", ["公交线路太少", "公交站离园区太远", "通勤班车没有停靠点"], ["员工通勤困难", "招工受影响"]),
    ("交通出行", ["货车通行证难办", "货车限行时间太长", "大货车禁行"], ["原料运不进来", "物流成本上升"]),
    ("交通出行", ["道路破损", "路面坑洼", "道路施工围挡太久"], ["车辆底盘刮坏", "客户来访不方便"]),
    ("交通出行", ["违章停车", "乱停乱放", "停车位不够"], ["厂门口被堵", "消防车进不来"]),
    ("税务", ["增值税留抵退税慢", "出口退税审核太久", "退税一直没到账"], ["资金周转困难", "影响发工资"]),
    ("税务", ["发票领用麻烦", "电子发票开不出来", "专用发票额度不够"], ["客户催发票", "货款收不回"]),
    ("税务", ["研发费用加计扣除政策不清楚", "税收优惠申报复杂", "小微企业减税怎么享受"], ["怕申报出错", "财务不会操作"]),
    ("行政审批", ["营业执照变更材料多", "经营范围变更要跑多次", "企业开办流程复杂"], ["耽误签合同", "项目没法启动"]),
    ("行政审批", ["许可证续期手续繁琐", "食品经营许可证办理慢", "消防验收排队长"], ["门店不能开业", "证件快过期了"]),
    ("规划建设", ["厂房扩建规划许可难", "用地指标不够", "土地证办不下来"], ["项目停滞", "融资受影响"]),
    ("规划建设", ["施工许可审批慢", "竣工验收拖延", "规划调整迟迟不批"], ["工期延误", "交房违约"]),
    ("环境保护", ["隔壁工厂偷排废气", "夜间施工噪音扰民", "扬尘污染严重"], ["员工头晕", "产品被污染"]),
    ("环境保护", ["环评审批周期长", "排污许可证办理难", "危废处置费用高"], ["新项目投不了产", "成本压力大"]),
    ("市场监管", ["商标被抢注", "有人冒用我们的品牌", "假冒产品在网上卖"], ["销量下滑", "客户投诉质量问题"]),
    ("市场监管", ["特种设备检验排期长", "电梯年检约不上", "计量器具检定慢"], ["设备不能使用", "生产受限"]),
    ("住房保障", ["员工宿舍不够", "公租房申请条件高", "保障房分配慢"], ["新员工没地方住", "招工受影响"]),
    ("企业发展", ["技改补贴申报不清楚", "专精特新认定材料多", "智能制造项目补助没兑现"], ["投资计划搁置", "错过申报期"]),
    ("企业发展", ["融资难", "贷款审批慢", "担保费用太高"], ["流动资金紧张", "扩产计划推迟"]),
    ("企业发展", ["上游供应链断供", "产业链配套企业太少", "原材料涨价"], ["交货期延误", "利润被压缩"]),
    ("商圈建设", ["商圈客流下降", "商业综合体招商难", "商圈活动太少"], ["商户经营困难", "空铺越来越多"]),
    ("商圈建设", ["会展场地审批难", "促销活动审批复杂", "外摆许可办不下来"], ["活动办不成", "错过销售旺季"]),
    ("政策咨询", ["稳岗补贴怎么申请", "创业补贴申请条件", "纾困资金申报流程"], ["想了解具体材料", "不知道找哪个部门"]),
    ("政策咨询", ["高新技术企业认定流程", "科技型中小企业评价", "知识产权资助政策"], ["想今年申报", "材料不知道怎么准备"]),
    ("其他", ["物业费上涨太多", "物业管理混乱", "写字楼空调不制冷"], ["员工投诉", "租户想搬走"]),
    ("其他", ["网络信号差", "宽带经常断网", "5G基站没覆盖"], ["视频会议开不了", "线上订单受影响"]),
    ("其他", ["厂区周边治安差", "夜间有人偷盗", "监控探头太少"], ["员工不敢加班", "货物被盗"]),
    ("其他", ["拆迁补偿标准不清", "征地进度慢", "临时用地到期"], ["厂房搬不了", "投资受损"]),
    ("其他", ["园区食堂太少", "周边没有医院", "配套学校不够"], ["员工生活不便", "留不住人"]),
    ("其他", ["消防检查整改要求不明确", "安全生产检查太频繁", "整改期限太短"], ["生产被打断", "整改成本高"]),
]
OPENINGS = ["", "我们公司", "我们厂", "我司", "本企业", "我们店", "我们园区的企业"]
TIMES = ["最近", "这个月", "上周", "这两周", "连续几天", "今天上午", "昨天晚上", "近期"]
ASKS = ["希望尽快解决", "请相关部门协调处理", "希望政府帮忙", "请给一个明确答复", "建议尽快整改", "希望有人来看看",
        "麻烦尽快安排", "请帮忙对接"]


def synthetic(per_month: int, month: str, months_back: int, seed: int = 20261,
              matters: list[int] | None = None) -> list[TopicAppeal]:
    """``per_month`` appeals in ``month`` and in each of the ``months_back`` months before it.

    ``matters``, when given, receives the index (in :data:`MATTERS`) of each appeal's matter.
    """
    rng = random.Random(seed)
    growing = 0  # the first matter grows towards the month analysed
    out: list[TopicAppeal] = []
    enterprises = [f"91510100MA{n:07d}X" for n in range(max(per_month // 5, 10))]
    number = 0
    for back in range(months_back, -1, -1):
        m = shift_month(month, -back)
        start, end = month_bounds(m)
        seconds = int((end - start).total_seconds())
        weights = [1.0] * len(MATTERS)
        weights[growing] = 1.0 + 3.0 * (months_back - back)  # 1x, 4x, 7x, 10x the others
        for _ in range(per_month):
            matter = rng.choices(range(len(MATTERS)), weights)[0]
            if matters is not None:
                matters.append(matter)
            category, subjects, effects = MATTERS[matter]
            parts = [rng.choice(OPENINGS), rng.choice(PLACES), rng.choice(TIMES), rng.choice(subjects), "，",
                     rng.choice(effects), "，", rng.choice(ASKS), "。"]
            number += 1
            out.append(TopicAppeal(
                appeal_id=f"CT-{m.replace('-', '')}01-{number:06d}", content="".join(parts),
                received_at=start + timedelta(seconds=rng.randrange(seconds)),
                category=category if rng.random() > 0.1 else "其他",
                enterprise_key=rng.choice(enterprises), kind="appeal"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-month", type=int, default=20000)
    parser.add_argument("--months-back", type=int, default=3)
    parser.add_argument("--month", default="2026-11")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    appeals = synthetic(args.per_month, args.month, args.months_back)
    settings = TopicSettings(months_back=args.months_back)
    first = None
    for run in range(args.runs):
        started = time.perf_counter()
        report = analyse(appeals, args.month, settings)
        took = time.perf_counter() - started
        same = first is None or report == first
        first = first or report
        print(f"run {run + 1}: {len(appeals)} appeals ({args.per_month} a month, {args.months_back} months back) "
              f"in {took:.1f} s; same report as run 1: {same}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory {peak:.0f} MiB; at {datetime.now(SHANGHAI):%Y-%m-%d %H:%M}")
    print(f"{len(first.themes)} themes listed, {len(first.repeated)} repeated groups")
    for t in first.themes[:10]:
        print(f"  {t.theme_id} {t.count:>5} {t.label}  ({t.main_category}, growth "
              f"{'new' if t.new else f'{(t.growth or 0):.0%}'}, score {t.score:g})")
    if first.proposal:
        print(f"proposal: {first.proposal.title}; {first.proposal.why}")


if __name__ == "__main__":
    main()
